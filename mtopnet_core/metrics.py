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
from scipy import stats
from scipy.signal import find_peaks

from mtopnet_core import grid

__all__ = ["pdf_peaks", "PdfSummary", "summarise_pdfs", "screen", "ENTROPY_THRESHOLD", "SKEWNESS_THRESHOLD",
           "PEAK_WINDOW_DZ", "success_fraction", "line_location_auc", "line_recovery"]

ENTROPY_THRESHOLD: float = 2.0
"""Paper's screening threshold on the PDF entropy (natural log): keep below."""
SKEWNESS_THRESHOLD: float = 20.0
"""Paper's screening threshold on the skewness of the probability vector: keep above."""
PEAK_WINDOW_DZ: float = 0.01
"""Half-width in z of a PDF peak: the probability within it (``p_within_0p01``), and the least
distance between two solutions (3-4 redshift bins)."""


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


def _second_solutions(pdf: np.ndarray, peak: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z_second = np.full(len(pdf), np.nan)
    p_second = np.zeros(len(pdf))
    for i, row in enumerate(pdf):
        # local maxima at least PEAK_WINDOW_DZ (3-4 bins) from one another
        maxima, _ = find_peaks(np.concatenate([[0.0], row, [0.0]]), distance=4)
        maxima = maxima - 1
        maxima = maxima[np.abs(centres[maxima] - centres[peak[i]]) > PEAK_WINDOW_DZ]
        if maxima.size:
            best = maxima[np.argmax(row[maxima])]
            z_second[i], p_second[i] = centres[best], row[best] / row[peak[i]]
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
    maxima, _ = find_peaks(np.concatenate([[0.0], pdf, [0.0]]), distance=4)
    maxima = maxima - 1
    maxima = maxima[np.argsort(pdf[maxima])[::-1]]
    chosen: list[int] = []
    for m in maxima:
        if pdf[m] < min_ratio * pdf[maxima[0]] or len(chosen) == n:
            break
        if all(abs(centres[m] - centres[c]) > PEAK_WINDOW_DZ for c in chosen):
            chosen.append(int(m))
    return [(float(centres[m]), float(pdf[m] / pdf[chosen[0]]),
             float(pdf[np.abs(centres - centres[m]) < PEAK_WINDOW_DZ].sum())) for m in chosen]


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
    skewness[varied] = stats.skew(pdf[varied], axis=1)
    z_second, p_second = _second_solutions(pdf, peak, centres)
    return PdfSummary(
        z_peak=z_peak, z_second=z_second, p_second=p_second,
        entropy=stats.entropy(pdf, axis=1), skewness=skewness,
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
