"""The line comb: line-location probabilities from a fine redshift distribution.

The line-location label of a spectrum (:func:`mtopnet_core.labels.line_location_labels`) is a
function of its redshift alone: every Table 1 line at that redshift, +-5 channels. The paper's
head (an MLP with 12 217 sigmoid outputs) has to draw those ~40 narrow windows from a 128-unit
code of the spectrum; ours blurred each line over ~35 channels (peak ~0.3) and placed only 22% of
the lines with S/N > 5 (shipped model v5). The comb head (:mod:`mtopnet_core.model`) instead
predicts a distribution over fine redshift bins (:data:`FINE_BINS_PER_Z_BIN` per redshift bin)
and projects it through the labels themselves:

    P(channel c holds a line) = sum of p(fine bin s) over the bins s whose label marks c,

so a distribution concentrated on the right fine bin gives exactly the label. Per channel, the
bins whose label marks it form a few intervals (one per line that can land there, doublets
merged); the sum over an interval is a difference of the cumulative distribution, so the
projection needs only a cumulative sum, two gathers and a sum per channel
(:func:`mask_intervals`).

Here are the constant index arrays (derived from the grid, the redshift bins and Table 1, so a
model never stores them), and the evidence and the projection in NumPy, each a sparse product:
MC dropout (:mod:`mtopnet_core.mc_dropout`) and the exported network
(:class:`mtopnet_core.runtime.OnnxNetwork`) use them (~10x and ~3x faster than ONNX Runtime's
gathers); the Keras layers are in :mod:`mtopnet_core.model`.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
from scipy import sparse

from mtopnet_core import grid
from mtopnet_core.labels import line_channels, line_location_marks

__all__ = ["LINE_HEADS", "EVIDENCE_LAYER", "EVIDENCE_MAPS_LAYER", "PRIOR_SUFFIX", "FINE_BINS_PER_Z_BIN", "N_FINE_BINS",
           "fine_redshift_centres", "fine_line_channels", "mask_intervals", "evidence_entries", "evidence_matrix",
           "EVIDENCE_ROWS", "evidence", "fine_distribution", "project"]

LINE_HEADS: tuple[str, ...] = ("comb", "paper")
"""The forms of the line-location head (:class:`mtopnet_core.model.ModelConfig`): this comb, or the paper's MLP."""
EVIDENCE_LAYER = "line_evidence"
"""Name of the comb head's layer (and, after :mod:`mtopnet_core.mc_dropout`, network output) giving
the fine bins' evidence."""
EVIDENCE_MAPS_LAYER = f"{EVIDENCE_LAYER}_maps"
"""Name of the convolution giving the evidence maps the evidence layer reads."""
PRIOR_SUFFIX = "_prior"
"""The comb head's last dense layer (its prior logits) is the task's name with this suffix."""
FINE_BINS_PER_Z_BIN: int = 5
"""Fine redshift bins per redshift bin: 0.0006 wide, which moves a line by 3 channels from one to
the next (median; 7 at most, [S III] 9532 in H at z ~ 0.7): any redshift puts every line within 4
channels of where its nearest fine bin does, inside the label's +-5."""
N_FINE_BINS: int = grid.N_Z_BINS * FINE_BINS_PER_Z_BIN


@lru_cache(maxsize=1)
def fine_redshift_centres() -> np.ndarray:
    """Centres of the fine redshift bins.

    Returns
    -------
    numpy.ndarray, shape (4000,), float64
    """
    width = grid.Z_BIN_WIDTH / FINE_BINS_PER_Z_BIN
    return grid.Z_MIN + width * (np.arange(N_FINE_BINS) + 0.5)


@lru_cache(maxsize=1)
def fine_line_channels() -> np.ndarray:
    """Channel of every Table 1 line at every fine redshift, where the evidence for it is read.

    Returns
    -------
    numpy.ndarray, shape (4000, 42), int32
        Channel index; 12 217 (one past the grid, where the evidence is zero) for a line that
        falls off the grid.
    """
    channels = line_channels(fine_redshift_centres())
    return np.where(channels >= 0, channels, grid.N_CHANNELS).astype(np.int32)


@lru_cache(maxsize=1)
def mask_intervals() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel, the intervals of fine bins whose label marks it.

    Returns
    -------
    channel, lower, upper : numpy.ndarray, shape (T,), int32
        Interval t covers fine bins ``lower[t]`` to ``upper[t] - 1`` and belongs to channel
        ``channel[t]`` (ascending): its probability is ``cdf[upper] - cdf[lower]`` with
        ``cdf = [0, cumsum(p)]`` (length 4001). ~190 000 intervals on the MOONS grid, 15 per
        channel on average, at most 26.
    """
    mask = _mask_matrix()  # per channel, its fine bins in ascending order
    channel = np.repeat(np.arange(grid.N_CHANNELS), np.diff(mask.indptr))
    fine_bin = mask.indices
    starts = np.ones(fine_bin.size, dtype=bool)  # where a run of consecutive fine bins starts
    starts[1:] = (fine_bin[1:] != fine_bin[:-1] + 1) | (channel[1:] != channel[:-1])
    first = np.nonzero(starts)[0]
    last = np.append(first[1:], fine_bin.size) - 1
    return channel[first].astype(np.int32), fine_bin[first].astype(np.int32), (fine_bin[last] + 1).astype(np.int32)


@lru_cache(maxsize=1)
def _mask_matrix() -> sparse.csr_matrix:
    """The labels of all fine bins as a sparse (12217, 4000) matrix: row c marks the bins whose
    label marks c (from the labels' own marks, 0.05 s; the dense labels took 0.7 s per process)."""
    fine_bin, channel = line_location_marks(fine_redshift_centres())
    mask = sparse.csr_matrix((np.ones(fine_bin.size, np.float32), (channel, fine_bin)),
                             shape=(grid.N_CHANNELS, N_FINE_BINS))
    mask.sum_duplicates()  # sorts each row's fine bins too
    mask.data[:] = 1.0  # a channel near two lines at one redshift is marked once, as in the labels
    return mask


_BUILDING = threading.Lock()
"""Held while the projection is built: prediction threads that ask at once build it once (0.05 s)."""


def _projection_matrix() -> sparse.csr_matrix:
    """:func:`_mask_matrix` transposed, shape (4000, 12217): ``fine @`` it gives the same values as
    ``mask @ fine.T`` in three quarters of the time (BENCHMARKS.md)."""
    with _BUILDING:
        return _built_projection_matrix()


@lru_cache(maxsize=1)
def _built_projection_matrix() -> sparse.csr_matrix:
    return _mask_matrix().T.tocsr()


@lru_cache(maxsize=1)
def evidence_entries() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the evidence layer reads: every (fine bin, Table 1 line) that puts the line on the grid.

    Returns
    -------
    fine_bin, line, channel : numpy.ndarray, shape (E,), int
        ~59 000 entries: the fine bin, the line's index in Table 1 and its channel there.
    """
    channels = fine_line_channels()
    fine_bin, line = np.nonzero(channels < grid.N_CHANNELS)
    return fine_bin, line, channels[fine_bin, line]


def evidence_matrix(line_weights: np.ndarray) -> sparse.csr_matrix:
    """The evidence layer (:class:`mtopnet_core.model.LineEvidence`) as a sparse matrix.

    Parameters
    ----------
    line_weights : numpy.ndarray, shape (42, M)
        The layer's weight of each Table 1 line in each of its M evidence maps.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (M * 12217, 4000), float32
        Row ``m * 12217 + c`` holds, for every fine bin that puts a line on channel c, that line's
        weight in map m (~60 000 entries per map); :func:`evidence` multiplies by it.
    """
    line_weights = np.asarray(line_weights, np.float32)
    n_maps = line_weights.shape[1]
    fine_bin, line, channel = evidence_entries()
    rows = (np.arange(n_maps)[:, None] * grid.N_CHANNELS + channel).ravel()
    return sparse.csr_matrix((line_weights[line].T.ravel(), (rows, np.tile(fine_bin, n_maps))),
                             shape=(n_maps * grid.N_CHANNELS, N_FINE_BINS))


EVIDENCE_ROWS = 16
"""Spectra per sparse product in :func:`evidence`: SciPy multiplies a transposed copy of the maps,
which for 16 spectra (1.6 MB) stays in a core's 2 MB L2 cache and for 32 does not (0.03 against
0.05-0.07 ms per spectrum on AMD AVX-512; BENCHMARKS.md)."""


def evidence(maps: np.ndarray, matrix: sparse.csr_matrix) -> np.ndarray:
    """Log-likelihood of every fine redshift bin from the evidence maps (the evidence layer in NumPy).

    Parameters
    ----------
    maps : numpy.ndarray, shape (N, M, 12217)
        The evidence maps (:data:`EVIDENCE_MAPS_LAYER`), maps first.
    matrix : scipy.sparse.csr_matrix
        :func:`evidence_matrix` of the layer's weights.

    Returns
    -------
    numpy.ndarray, shape (N, 4000), float32
    """
    flat = np.ascontiguousarray(maps, np.float32).reshape(len(maps), -1)
    out = np.empty((len(flat), matrix.shape[1]), np.float32)
    for start in range(0, len(flat), EVIDENCE_ROWS):
        out[start:start + EVIDENCE_ROWS] = flat[start:start + EVIDENCE_ROWS] @ matrix  # scipy's is column-major
    return out


def fine_distribution(prior_logits: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """The comb head's fine redshift distribution.

    Parameters
    ----------
    prior_logits : numpy.ndarray, shape (N, 800)
        Logits of the head's MLP, one per redshift bin (shared by its fine bins).
    evidence : numpy.ndarray, shape (N, 4000)
        Log-likelihood of each fine bin from the spectrum's line evidence.

    Returns
    -------
    numpy.ndarray, shape (N, 4000), float32
        Sums to 1 per row.
    """
    logits = np.repeat(prior_logits, FINE_BINS_PER_Z_BIN, axis=1) + evidence
    logits = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (logits / logits.sum(axis=1, keepdims=True)).astype(np.float32)


def project(fine: np.ndarray) -> np.ndarray:
    """Line-location probabilities of fine redshift distributions.

    Parameters
    ----------
    fine : numpy.ndarray, shape (N, 4000)
        Probability of each fine redshift bin.

    Returns
    -------
    numpy.ndarray, shape (N, 12217), float32
        Probability that each channel lies within 5 channels of a Table 1 line.
    """
    return np.clip(np.asarray(fine, np.float32) @ _projection_matrix(), 0.0, 1.0)
