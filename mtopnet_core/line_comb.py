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
model never stores them) and the projection in NumPy, a sparse product: MC dropout
(:mod:`mtopnet_core.mc_dropout`) and the exported network (:class:`mtopnet_core.runtime.OnnxNetwork`,
~3x faster than ONNX Runtime's gathers) use it; the Keras layers are in :mod:`mtopnet_core.model`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse

from mtopnet_core import grid
from mtopnet_core.labels import line_channels, line_location_labels

__all__ = ["LINE_HEADS", "EVIDENCE_LAYER", "PRIOR_SUFFIX", "FINE_BINS_PER_Z_BIN", "N_FINE_BINS",
           "fine_redshift_centres", "fine_line_channels", "lines_on_grid", "mask_intervals", "fine_distribution",
           "project"]

LINE_HEADS: tuple[str, ...] = ("comb", "paper")
"""The forms of the line-location head (:class:`mtopnet_core.model.ModelConfig`): this comb, or the paper's MLP."""
EVIDENCE_LAYER = "line_evidence"
"""Name of the comb head's layer (and, after :mod:`mtopnet_core.mc_dropout`, network output) giving
the fine bins' evidence."""
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
def lines_on_grid() -> np.ndarray:
    """Table 1 lines that fall on the grid at some fine redshift (32: not Ly-alpha ... C IV, nor He I).

    Returns
    -------
    numpy.ndarray, shape (32,), int64
        Their indices in Table 1's order.
    """
    return np.nonzero((fine_line_channels() < grid.N_CHANNELS).any(axis=0))[0]


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
    edges = np.zeros((N_FINE_BINS + 2, grid.N_CHANNELS), dtype=np.int8)
    z = fine_redshift_centres()
    for start in range(0, N_FINE_BINS, 500):  # 500 labels at a time: 6 MB each
        edges[start + 1:start + 501] = line_location_labels(z[start:start + 500])
    steps = np.diff(edges, axis=0).T  # +1 where an interval starts, -1 one past where it ends
    channel, lower = np.nonzero(steps == 1)  # row by row: channels ascending, intervals in turn
    _, upper = np.nonzero(steps == -1)
    return channel.astype(np.int32), lower.astype(np.int32), upper.astype(np.int32)


@lru_cache(maxsize=1)
def _mask_matrix() -> sparse.csr_matrix:
    """The labels of all fine bins as a sparse (12217, 4000) matrix: row c marks the bins whose label marks c."""
    channel, lower, upper = mask_intervals()
    lengths = upper - lower
    rows = np.repeat(channel, lengths)
    columns = np.repeat(lower - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    return sparse.csr_matrix((np.ones(rows.size, np.float32), (rows, columns)),
                             shape=(grid.N_CHANNELS, N_FINE_BINS))


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
    return np.clip(np.asarray(_mask_matrix() @ np.asarray(fine, np.float32).T).T, 0.0, 1.0)
