"""Redshift-PDF metrics and screening (paper, section 5.2), plus summaries of each PDF.

The paper screens predictions with ``scipy.stats.entropy`` and ``scipy.stats.skew`` computed on
the probability vector itself (the 800 bin probabilities taken as a sample) and also reports its
root mean square; good PDFs are narrow (low entropy, high skewness), bad ones broad or
multi-peaked. Thresholds: entropy 2 (natural log), skewness 20. Beyond the paper we give each
PDF's width in z, the probability within |dz| < 0.01 of its peak, and its second solution.

The line-location head is scored per channel (ROC AUC against the paper's line masks) and per
line (is there a predicted line within a few channels of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import entr

from mtopnet_core import grid

__all__ = ["pdf_peaks", "PdfSummary", "summarise_pdfs", "pdf_entropy", "screen", "ENTROPY_THRESHOLD",
           "SKEWNESS_THRESHOLD", "PEAK_WINDOW_DZ", "success_fraction", "line_location_auc", "line_recovery"]

ENTROPY_THRESHOLD: float = 2.0
"""Paper's screening threshold on the PDF entropy (natural log): keep below."""
SKEWNESS_THRESHOLD: float = 20.0
"""Paper's screening threshold on the skewness of the probability vector: keep above."""
PEAK_WINDOW_DZ: float = 0.01
"""Half-width in z of a PDF peak: the probability within it (``p_within_0p01``), and the least
distance between two solutions (3-4 redshift bins)."""
_PEAK_DISTANCE: int = 4
"""Local maxima closer than this many bins to a higher one are not solutions of their own."""


@dataclass(frozen=True)
class PdfSummary:
    """Per-object summaries of redshift PDFs, each an array of shape (N,).

    Attributes
    ----------
    z_peak : redshift of the most probable bin (centre)
    z_second : redshift of the second-highest local maximum (NaN if there is none)
    p_second : probability of that bin divided by the peak's
    entropy : scipy.stats.entropy of the probability vector (nats)
    skewness : scipy.stats.skew of the probability vector (0 for a flat PDF)
    rms : root mean square of the probability vector
    width : standard deviation of z under the PDF
    p_within_0p01 : probability within |z - z_peak| < 0.01
    """

    z_peak: np.ndarray
    z_second: np.ndarray
    p_second: np.ndarray
    entropy: np.ndarray
    skewness: np.ndarray
    rms: np.ndarray
    width: np.ndarray
    p_within_0p01: np.ndarray


def _local_maxima(pdf: np.ndarray, distance: int = _PEAK_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """The local maxima of each row, as ``scipy.signal.find_peaks(row, distance=distance)`` finds
    them in the row with a 0 beyond each end.

    A plateau counts once, at its middle (rounded down); of maxima closer than ``distance`` bins,
    the higher is kept (scipy's order, its ``argsort`` of the heights, for ties). Written here
    because ``scipy.signal`` takes ~1 s to import, which every prediction process paid before
    its first results (issue 11); ``tests/test_metrics.py`` checks it against scipy.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (N, B)
        Non-negative (NaN is never a maximum nor next to one).
    distance : int

    Returns
    -------
    rows, bins : numpy.ndarray, shape (K,), int
        The maxima, by row, then bin.
    """
    n, width = pdf.shape
    padded = np.zeros((n, width + 2))
    padded[:, 1:-1] = pdf
    flat = padded.ravel()  # the zeros between rows end every run of equal values at a row's end
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    ends = np.r_[starts[1:], flat.size] - 1
    values = flat[starts]
    peak_runs = np.flatnonzero((values[1:-1] > values[:-2]) & (values[1:-1] > values[2:])) + 1
    rows, bins = np.divmod((starts[peak_runs] + ends[peak_runs]) // 2, width + 2)
    bins -= 1
    keep = _apart(rows, bins, pdf[rows, bins], distance)
    return rows[keep], bins[keep]


def _apart(rows: np.ndarray, bins: np.ndarray, heights: np.ndarray, distance: int) -> np.ndarray:
    """Which maxima remain when each, highest first, removes the others of its row within
    ``distance`` bins (scipy's ``_select_by_peak_distance``); a boolean mask over them.

    Two maxima are at least 2 bins apart (a lower run lies between), so for ``distance <= 4``
    only neighbours in the list can be too close, and the rule can be applied to all rows at
    once, in rounds: an undecided maximum higher than its undecided close neighbours is kept
    and removes them (the order of the heights decides as in scipy's loop; where two close
    maxima are equally high, scipy's own order of that row is followed).
    """
    if distance > 4:
        raise ValueError(f"distance {distance} > 4 bins: maxima other than neighbours could be too close")
    close = (rows[1:] == rows[:-1]) & (np.diff(bins) < distance)
    keep = np.ones(len(bins), bool)
    tied = np.unique(rows[1:][close & (heights[1:] == heights[:-1])])
    close &= ~np.isin(rows[1:], tied)
    undecided = np.zeros(len(bins), bool)
    undecided[1:] |= close
    undecided[:-1] |= close
    while undecided.any():
        left_rival = np.zeros(len(bins), bool)
        left_rival[1:] = close & undecided[:-1] & (heights[:-1] >= heights[1:])
        right_rival = np.zeros(len(bins), bool)
        right_rival[:-1] = close & undecided[1:] & (heights[1:] >= heights[:-1])
        wins = undecided & ~left_rival & ~right_rival
        loses = np.zeros(len(bins), bool)
        loses[1:] |= close & wins[:-1]
        loses[:-1] |= close & wins[1:]
        loses &= undecided
        keep[loses] = False
        undecided &= ~(wins | loses)
    for row in tied:
        at = np.flatnonzero(rows == row)
        keep[at] = _apart_in_order(bins[at], heights[at], distance)
    return keep


def _apart_in_order(bins: np.ndarray, heights: np.ndarray, distance: int) -> np.ndarray:
    """:func:`_apart` for one row, maxima taken one by one in scipy's order."""
    keep = np.ones(len(bins), bool)
    for j in np.argsort(heights)[::-1]:
        if keep[j]:
            keep[np.abs(bins - bins[j]) < distance] = False
            keep[j] = True
    return keep


def _second_solutions(pdf: np.ndarray, peak: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z_second = np.full(len(pdf), np.nan)
    p_second = np.zeros(len(pdf))
    rows, bins = _local_maxima(pdf)
    far = np.abs(centres[bins] - centres[peak[rows]]) > PEAK_WINDOW_DZ
    rows, bins = rows[far], bins[far]
    # per row the highest maximum far from the peak (the lowest bin among equals)
    order = np.lexsort((bins, -pdf[rows, bins], rows))
    rows, bins = rows[order], bins[order]
    first = np.ones(len(rows), bool)
    first[1:] = rows[1:] != rows[:-1]
    rows, bins = rows[first], bins[first]
    z_second[rows], p_second[rows] = centres[bins], pdf[rows, bins] / pdf[rows, peak[rows]]
    return z_second, p_second


def pdf_peaks(pdf: np.ndarray, n: int = 5, min_ratio: float = 0.01) -> list[tuple[float, float, float]]:
    """The main solutions of one redshift PDF: its highest local maxima, at least 0.01 apart in z.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (800,)
    n : int
        At most this many solutions.
    min_ratio : float
        Ignore maxima below this fraction of the highest one.

    Returns
    -------
    list of (z, probability relative to the highest peak, probability within |dz| < 0.01)
        Highest first.
    """
    pdf = np.asarray(pdf, dtype=float)
    if not np.isfinite(pdf).all():
        return []
    centres = grid.redshift_bin_centres()
    _, maxima = _local_maxima(pdf[None, :])
    maxima = maxima[np.argsort(pdf[maxima])[::-1]]
    chosen: list[int] = []
    for m in maxima:
        if pdf[m] < min_ratio * pdf[maxima[0]] or len(chosen) == n:
            break
        if all(abs(centres[m] - centres[c]) > PEAK_WINDOW_DZ for c in chosen):
            chosen.append(int(m))
    return [(float(centres[m]), float(pdf[m] / pdf[chosen[0]]),
             float(pdf[np.abs(centres - centres[m]) < PEAK_WINDOW_DZ].sum())) for m in chosen]


def pdf_entropy(pdf: np.ndarray) -> np.ndarray:
    """Entropy of each PDF along the last axis, nats, as ``scipy.stats.entropy`` gives it (each
    PDF normalised first; NaN for one that sums to 0).

    ``scipy.stats`` is not imported for it: with ``scipy.signal`` it took ~1 s of every
    prediction process's start (issue 11).

    Parameters
    ----------
    pdf : numpy.ndarray, shape (..., B)
        Non-negative probabilities.

    Returns
    -------
    numpy.ndarray, shape (...)
    """
    pdf = np.asarray(pdf, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return entr(pdf / pdf.sum(axis=-1, keepdims=True)).sum(axis=-1)


def _skewness(values: np.ndarray) -> np.ndarray:
    """``scipy.stats.skew(values, axis=1)`` (biased moments) of rows that are not constant."""
    deviation = values - values.mean(axis=1, keepdims=True)
    squared = deviation * deviation  # products, not ``**3``: NumPy's pow took 70% of a PDF summary
    variance = squared.mean(axis=1)
    return (squared * deviation).mean(axis=1) / (variance * np.sqrt(variance))


def summarise_pdfs(pdf: np.ndarray) -> PdfSummary:
    """Summaries and screening metrics of redshift PDFs.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (N, 800)
        Probabilities over the redshift bins; rows are normalised here.

    Returns
    -------
    PdfSummary

    Raises
    ------
    ValueError
        If the PDFs are not on the 800 redshift bins or a row is negative or all zero.
    """
    pdf = np.atleast_2d(np.asarray(pdf, dtype=np.float64))
    if pdf.shape[1] != grid.N_Z_BINS:
        raise ValueError(f"PDFs have {pdf.shape[1]} bins, expected {grid.N_Z_BINS}")
    total = pdf.sum(axis=1, keepdims=True)
    if np.any(pdf < 0) or np.any(total <= 0):
        raise ValueError("PDFs must be non-negative with a positive sum")
    pdf = pdf / total
    centres = grid.redshift_bin_centres()
    peak = pdf.argmax(axis=1)
    z_peak = centres[peak]
    mean = pdf @ centres
    width = np.sqrt(np.maximum(pdf @ centres**2 - mean**2, 0.0))
    near = np.abs(centres[None, :] - z_peak[:, None]) < PEAK_WINDOW_DZ
    skewness = np.zeros(len(pdf))  # a flat PDF has no asymmetry (scipy would return NaN)
    varied = np.ptp(pdf, axis=1) > 1e-9 * pdf.max(axis=1)
    skewness[varied] = _skewness(pdf[varied])
    z_second, p_second = _second_solutions(pdf, peak, centres)
    return PdfSummary(
        z_peak=z_peak, z_second=z_second, p_second=p_second,
        entropy=pdf_entropy(pdf), skewness=skewness,
        rms=np.sqrt(np.mean(pdf**2, axis=1)), width=width,
        p_within_0p01=np.sum(pdf * near, axis=1),
    )


def screen(entropy: np.ndarray, skewness: np.ndarray, entropy_max: float | None = ENTROPY_THRESHOLD,
           skewness_min: float | None = None) -> np.ndarray:
    """Which predictions pass the screening (paper, section 5.2).

    Parameters
    ----------
    entropy, skewness : numpy.ndarray, shape (N,)
    entropy_max : float or None
        Keep entropy below this (paper: 2); None disables the cut.
    skewness_min : float or None
        Keep skewness above this (paper's alternative: 20); None disables the cut.

    Returns
    -------
    numpy.ndarray, shape (N,), bool
        True for kept predictions.
    """
    keep = np.ones(np.shape(entropy), dtype=bool)
    if entropy_max is not None:
        keep &= np.asarray(entropy) < entropy_max
    if skewness_min is not None:
        keep &= np.asarray(skewness) > skewness_min
    return keep


def success_fraction(z_pred: np.ndarray, z_true: np.ndarray, threshold: float) -> float:
    """Fraction of predictions with |z_pred - z_true| < threshold (paper, Fig. 7); NaN if empty."""
    z_pred, z_true = np.asarray(z_pred), np.asarray(z_true)
    if z_pred.size == 0:
        return float("nan")
    return float(np.mean(np.abs(z_pred - z_true) < threshold))


def line_location_auc(probability: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of per-channel line probabilities against the line masks, over all channels.

    Parameters
    ----------
    probability : numpy.ndarray, shape (N, C)
        Predicted line probability per channel.
    labels : numpy.ndarray, shape (N, C)
        1 where a line lies (:func:`mtopnet_core.labels.line_location_labels`), else 0.

    Returns
    -------
    float
        0.5 for a head that ranks channels by chance; a head that outputs the same vector for
        every spectrum scores only as well as the per-channel prior.
    """
    from sklearn.metrics import roc_auc_score  # heavy import, needed only here

    labels = np.asarray(labels).ravel()
    if labels.min() == labels.max():
        raise ValueError("line labels hold a single class; the AUC is undefined")
    return float(roc_auc_score(labels, np.asarray(probability, dtype=np.float32).ravel()))


def line_recovery(probability: np.ndarray, rows: np.ndarray, channels: np.ndarray, half_width: int = 5,
                  level: float = 0.5) -> np.ndarray:
    """Whether a line is predicted within ``half_width`` channels of each given line.

    Parameters
    ----------
    probability : numpy.ndarray, shape (N, C)
        Predicted line probability per channel.
    rows, channels : numpy.ndarray, shape (L,), int
        Spectrum and channel of each line to look for.
    half_width : int
        Channels on each side (paper's line masks: 5).
    level : float
        Probability a channel must reach to count as a predicted line.

    Returns
    -------
    numpy.ndarray, shape (L,), bool
    """
    probability = np.asarray(probability)
    offsets = np.arange(-half_width, half_width + 1)
    window = np.clip(np.asarray(channels)[:, None] + offsets[None, :], 0, probability.shape[1] - 1)
    return probability[np.asarray(rows)[:, None], window].max(axis=1) >= level
