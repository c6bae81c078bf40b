"""Accuracy of predictions against the truth of a mock test set (paper, sections 4 and 5).

Pure functions of a results catalogue (``z_true``, ``z_peak``, ...) and PDFs, shared by
``mtopnet evaluate`` (:mod:`mtopnet_core.evaluation_report`) and the app. The paper's
conventions: Delta z = z_peak - z_true (not divided by 1 + z); a prediction is *successful* when
|Delta z| < threshold, 0.01 unless said otherwise; *catastrophic* when |Delta z| > 0.5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from mtopnet_core import grid
from mtopnet_core.conventions import FLUX_UNIT, SPEED_OF_LIGHT_KMS, SUCCESS_THRESHOLD
from mtopnet_core.labels import LINE_HALF_WIDTH, line_location_labels
from mtopnet_core.metrics import ENTROPY_THRESHOLD, line_location_auc, line_recovery, screen

__all__ = ["SUCCESS_THRESHOLD", "SUCCESS_THRESHOLDS", "CATASTROPHIC_DZ", "delta_z", "paper_subsets", "success_table",
           "success_by_bins", "residual_histogram_range", "gaussian_fit", "flagged", "screening_summary",
           "screening_curve", "CATASTROPHIC_TARGET",
           "catastrophic_among_kept", "entropy_cut_for_catastrophic", "pit_values",
           "interval_coverage", "CATALOGUE_LINES", "line_signal_to_noise", "dataset_line_signal_to_noise",
           "measurable_redshift", "STRONG_LINE_SNR", "line_head_scores"]

SUCCESS_THRESHOLDS = (0.003, 0.005, SUCCESS_THRESHOLD, 0.1)
"""|Delta z| thresholds of the paper's Fig. 7."""
CATASTROPHIC_DZ = 0.5
BRIGHT_HALPHA = 1e-17
"""H-alpha flux (erg/s/cm^2) above which the paper calls a galaxy bright (Fig. 7, 8)."""


def delta_z(catalogue: pd.DataFrame) -> np.ndarray:
    """z_peak - z_true for every row (NaN where not processed), shape (N,)."""
    return (catalogue["z_peak"] - catalogue["z_true"]).to_numpy(dtype=float)


def paper_subsets(catalogue: pd.DataFrame) -> dict[str, np.ndarray]:
    """The paper's subsets (Fig. 7, 8) as boolean masks over the catalogue's rows.

    Per exposure time (all, and 0.8 < z < 1.7); MOONRISE-like (z < 2.6, m_H < 25, star-forming
    galaxies at 2 h and quiescent ones at 8 h); bright H-alpha (flux > 1e-17 erg/s/cm^2).
    """
    z, t = catalogue["z_true"].to_numpy(), catalogue["t_exp_h"].to_numpy()
    passive = (catalogue["galaxy_class"].astype(str) == "quiescent").to_numpy()
    subsets = {"all": np.ones(len(catalogue), bool)}
    for hours in sorted(np.unique(t)):
        subsets[f"{hours:g} h"] = t == hours
    for hours in sorted(np.unique(t)):
        subsets[f"{hours:g} h, 0.8 < z < 1.7"] = (t == hours) & (z > 0.8) & (z < 1.7)
    subsets["MOONRISE-like"] = (z < 2.6) & (catalogue["m_h"].to_numpy() < 25) & (
        (~passive & (t == 2)) | (passive & (t == 8)))
    subsets["bright H-alpha"] = catalogue["flux_halpha"].to_numpy() > BRIGHT_HALPHA
    return subsets


def _processed(catalogue: pd.DataFrame) -> np.ndarray:
    return np.isfinite(catalogue["z_peak"].to_numpy(dtype=float))


def success_table(catalogue: pd.DataFrame, thresholds=SUCCESS_THRESHOLDS) -> pd.DataFrame:
    """Success fractions per subset and |Delta z| threshold (paper, Fig. 7).

    Unprocessed spectra count as failures, so that a fraction is never flattered by rejects.

    Returns
    -------
    pandas.DataFrame
        Index: subset name; columns ``n`` and one per threshold (``dz<0.003``, ...).
    """
    dz = np.abs(delta_z(catalogue))
    rows = {}
    for name, mask in paper_subsets(catalogue).items():
        row = {"n": int(mask.sum())}
        for threshold in thresholds:
            row[f"dz<{threshold:g}"] = float(np.mean(dz[mask] < threshold)) if mask.any() else np.nan
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def success_by_bins(values: np.ndarray, success: np.ndarray, edges: np.ndarray,
                    min_count: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Success fraction in bins of a quantity (paper, Fig. 8 for m_H).

    Returns
    -------
    centres, fraction, counts : numpy.ndarray, shape (len(edges) - 1,)
        Fraction is NaN in bins with fewer than ``min_count`` objects.
    """
    index = np.digitize(values, edges) - 1
    n_bins = len(edges) - 1
    inside = (index >= 0) & (index < n_bins)
    counts = np.bincount(index[inside], minlength=n_bins)
    hits = np.bincount(index[inside & np.asarray(success, bool)], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(counts >= min_count, hits / counts, np.nan)
    return 0.5 * (edges[1:] + edges[:-1]), fraction, counts


def _median_and_nmad(values: np.ndarray) -> tuple[float, float]:
    """Median and normalised median absolute deviation (a Gaussian's sigma) of finite values."""
    median = float(np.median(values))
    return median, float(1.4826 * np.median(np.abs(values - median)))


def residual_histogram_range(residuals: np.ndarray, width_in_nmad: float = 8.0) -> tuple[float, float]:
    """The span of residuals that Fig. 4's histogram and Gaussian fit use, in the residuals' units.

    The central 98% of the values, narrowed to ``width_in_nmad`` normalised median absolute
    deviations either side of the median: catastrophic redshifts spread the 1-99th percentiles
    over ~1 in z while the bulk is ~0.001 wide, and bins that coarse would put the whole bulk
    in one bin and make the fitted sigma the bin width.
    """
    residuals = np.asarray(residuals, dtype=float)
    residuals = residuals[np.isfinite(residuals)]
    lo, hi = np.percentile(residuals, [1, 99])
    median, nmad = _median_and_nmad(residuals)
    if nmad > 0:
        lo, hi = max(lo, median - width_in_nmad * nmad), min(hi, median + width_in_nmad * nmad)
    return float(lo), float(hi)


def gaussian_fit(residuals: np.ndarray, bins: int = 80) -> tuple[float, float]:
    """Mean and sigma of a Gaussian fitted to the histogram of residuals (paper, Fig. 4).

    The histogram spans :func:`residual_histogram_range`, so that catastrophic outliers set
    neither the binning nor the fit (the paper: "the Gaussian fit primarily represents the bulk");
    the fit starts from the median and the normalised MAD.
    """
    residuals = np.asarray(residuals, dtype=float)
    residuals = residuals[np.isfinite(residuals)]
    lo, hi = residual_histogram_range(residuals)
    counts, edges = np.histogram(residuals, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[1:] + edges[:-1])
    median, nmad = _median_and_nmad(residuals)
    mad = nmad or (hi - lo) / 10

    from scipy.optimize import curve_fit  # evaluation only: prediction imports this module, not this

    def gauss(x, a, mu, sigma):
        return a * np.exp(-0.5 * ((x - mu) / sigma) ** 2)

    try:
        (_, mu, sigma), _ = curve_fit(gauss, centres, counts, p0=(counts.max(), median, mad))
    except RuntimeError:
        mu, sigma = median, mad
    return float(mu), float(abs(sigma))


def flagged(catalogue: pd.DataFrame) -> np.ndarray:
    """Rows whose ``flags`` say the prediction lies outside the model's training domain, shape (N,)."""
    if "flags" not in catalogue:
        return np.zeros(len(catalogue), bool)
    return catalogue["flags"].fillna("").astype(str).to_numpy() != ""


def screening_summary(catalogue: pd.DataFrame, entropy_max: float | None = ENTROPY_THRESHOLD,
                      skewness_min: float | None = None, threshold: float = SUCCESS_THRESHOLD,
                      drop_flagged: bool = False) -> pd.DataFrame:
    """Accuracy before and after screening, per exposure time (paper, section 5.2).

    With ``drop_flagged``, predictions with a non-empty ``flags`` column (outside the model's
    training domain, :func:`mtopnet_core.inference.domain_flags`) are screened out too.

    Returns
    -------
    pandas.DataFrame
        Index: ``all`` and each exposure time; columns ``n``, ``accuracy_before``,
        ``accuracy_after``, ``rejected`` (fraction of the subset), ``false_rejections``
        (fraction of the subset's successful predictions that the screening removes),
        ``missed_failures`` (fraction of the kept ones that fail).
    """
    processed = _processed(catalogue)
    good = np.abs(delta_z(catalogue)) < threshold
    keep = screen(catalogue["entropy"].to_numpy(), catalogue["skewness"].to_numpy(), entropy_max, skewness_min)
    keep &= processed
    if drop_flagged:
        keep &= ~flagged(catalogue)
    t = catalogue["t_exp_h"].to_numpy()
    groups = {"all": np.ones(len(catalogue), bool)} | {f"{h:g} h": t == h for h in sorted(np.unique(t))}
    rows = {}
    for name, mask in groups.items():
        kept = mask & keep
        n_good = int((mask & good).sum())
        rows[name] = {
            "n": int(mask.sum()),
            "accuracy_before": float(good[mask].mean()) if mask.any() else np.nan,
            "accuracy_after": float(good[kept].mean()) if kept.any() else np.nan,
            "rejected": float(1 - kept.sum() / mask.sum()) if mask.any() else np.nan,
            "false_rejections": float((mask & good & ~keep).sum() / n_good) if n_good else np.nan,
            "missed_failures": float((kept & ~good).sum() / kept.sum()) if kept.any() else np.nan,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


CATASTROPHIC_TARGET = 0.003
"""Largest share of catastrophic redshifts among the objects a screening keeps (issue 9's goal)."""
ENTROPY_CUTS = np.round(np.arange(0.5, 6.5001, 0.05), 2)
"""Entropy thresholds tried by :func:`entropy_cut_for_catastrophic` (a flat PDF has ln 800 = 6.7)."""


def catastrophic_among_kept(entropy: np.ndarray, dz: np.ndarray, entropy_max: float) -> float:
    """Share of |dz| > 0.5 among the predictions with entropy below ``entropy_max`` (NaN if none is kept).

    Parameters
    ----------
    entropy, dz : numpy.ndarray, shape (N,)
        PDF entropies and z_peak - z_true (NaN rows are never kept).
    entropy_max : float
    """
    entropy, dz = np.asarray(entropy, float), np.asarray(dz, float)
    kept = screen(entropy, np.zeros_like(entropy), entropy_max) & np.isfinite(dz)
    return float(np.mean(np.abs(dz[kept]) > CATASTROPHIC_DZ)) if kept.any() else np.nan


def entropy_cut_for_catastrophic(entropy: np.ndarray, dz: np.ndarray, target: float = CATASTROPHIC_TARGET,
                                 cuts: np.ndarray = ENTROPY_CUTS) -> float | None:
    """The largest entropy threshold whose kept predictions hold at most ``target`` catastrophic redshifts.

    Chosen on a calibration mock, it is the screening a test mock (or a survey) should be judged
    with: on model v6's MC-dropout PDFs the cut chosen this way kept 0.30% catastrophic on the
    calibration mock and 0.27% on the test mock (BENCHMARKS.md).

    Parameters
    ----------
    entropy, dz : numpy.ndarray, shape (N,)
        PDF entropies and z_peak - z_true of mock predictions.
    target : float
    cuts : numpy.ndarray
        Thresholds to try.

    Returns
    -------
    float or None
        None when no threshold meets the target.
    """
    meeting = [float(cut) for cut in cuts if catastrophic_among_kept(entropy, dz, cut) <= target]
    return max(meeting) if meeting else None


def screening_curve(entropy: np.ndarray, success: np.ndarray, n_points: int = 200) -> pd.DataFrame:
    """Accuracy against completeness as the entropy threshold moves.

    Parameters
    ----------
    entropy : numpy.ndarray, shape (N,)
        NaN for unprocessed spectra (always rejected).
    success : numpy.ndarray of bool, shape (N,)

    Returns
    -------
    pandas.DataFrame
        Columns ``entropy_max``, ``completeness`` (fraction kept), ``accuracy`` (of the kept).
    """
    entropy = np.asarray(entropy, dtype=float)
    finite = np.isfinite(entropy)
    order = np.argsort(entropy[finite])
    sorted_entropy, hits = entropy[finite][order], np.cumsum(success[finite][order])
    thresholds = np.quantile(sorted_entropy, np.linspace(0.01, 1, n_points)) if finite.any() else np.array([])
    kept = np.searchsorted(sorted_entropy, thresholds, side="right")
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(kept > 0, hits[np.maximum(kept - 1, 0)] / kept, np.nan)
    return pd.DataFrame({"entropy_max": thresholds, "completeness": kept / len(entropy), "accuracy": accuracy})


def _cdf_at(pdf: np.ndarray, z: np.ndarray) -> np.ndarray:
    """CDF of binned PDFs at z, with probability spread uniformly within each bin."""
    edges = grid.redshift_bin_edges()
    cumulative = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(pdf, axis=1)], axis=1)
    cumulative /= cumulative[:, -1:]
    return np.array([np.interp(zi, edges, ci) for zi, ci in zip(z, cumulative, strict=True)])


def pit_values(pdf: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    """Probability integral transform: each PDF's CDF at the true redshift, shape (N,).

    Calibrated PDFs give PIT values uniform on [0, 1]; a U shape means over-confident PDFs, a
    hump under-confident ones. Rows with NaN PDFs give NaN.
    """
    pdf, z_true = np.asarray(pdf, dtype=float), np.asarray(z_true, dtype=float)
    out = np.full(len(pdf), np.nan)
    good = np.isfinite(pdf).all(axis=1) & np.isfinite(z_true)
    out[good] = _cdf_at(pdf[good], z_true[good])
    return out


def interval_coverage(pit: np.ndarray, levels=(0.68, 0.95)) -> dict[str, float]:
    """Fraction of true redshifts inside the central credible intervals of their PDFs.

    Calibrated PDFs give coverage equal to the level. Computed from PIT values: the truth lies
    in the central interval of probability p when |PIT - 0.5| < p / 2.
    """
    pit = np.asarray(pit, dtype=float)
    pit = pit[np.isfinite(pit)]
    return {f"{level:g}": float(np.mean(np.abs(pit - 0.5) < level / 2)) if pit.size else np.nan
            for level in levels}


CATALOGUE_LINES: dict[str, tuple[tuple[float, float], ...]] = {
    "flux_halpha": ((6564.61, 1.0),), "flux_hbeta": ((4862.68, 1.0),), "flux_oiii_5008": ((5008.24, 1.0),),
    "flux_oii_3727_3730": ((3727.09, 1.0 / 2.4), (3729.88, 1.4 / 2.4)), "flux_nii_6585": ((6585.27, 1.0),),
}
"""Line-flux columns of a mock's truth catalogue: (rest vacuum wavelength in A, share of the
column's flux) of each line it holds; [OII] 3730/3727 = 1.4 as the simulator draws it."""

_WINDOW = 40  # channels on each side of a line summed for its S/N (> 8 sigma for sigma_gas <= 200 km/s)


def line_signal_to_noise(catalogue: pd.DataFrame, error: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """Matched-filter S/N of each catalogue line in each mock spectrum, from its own noise.

    The line as the simulator draws it (a Gaussian of sigma_gas and the instrument's resolution
    in quadrature, times the fibre fraction) weighted by the inverse variance of every unmasked
    channel: S/N^2 = sum_i (F p_i)^2 / (e_i dlambda_i)^2, with p_i the line's flux fraction in
    channel i. Atmospheric transmission is left out (telluric channels are masked).

    Parameters
    ----------
    catalogue : pandas.DataFrame, N rows
        Truth rows with ``z``, ``fibre_fraction``, ``sigma_gas_kms`` and the line fluxes of
        :data:`CATALOGUE_LINES` (erg/s/cm^2).
    error : numpy.ndarray, shape (N, 12217)
        1-sigma flux errors, 1e-17 erg/s/cm^2/A.
    mask : numpy.ndarray, shape (N, 12217)
        Channel quality (0 = good).

    Returns
    -------
    pandas.DataFrame, N rows
        One column per line (the flux column's name without ``flux_``); 0 where the line falls
        off the grid or only on masked channels.
    """
    wave = grid.wavelength_grid()
    lower, upper = grid.pixel_edges()
    sigma_inst = SPEED_OF_LIGHT_KMS / grid.resolving_power() / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    detector = grid.channel_index()
    z = catalogue["z"].to_numpy(float)
    rows = np.arange(len(z))[:, None]
    out = {}
    for column, components in CATALOGUE_LINES.items():
        centre = np.mean([rest for rest, _ in components]) * (1.0 + z)
        nearest = np.clip(np.searchsorted(wave, centre), 0, wave.size - 1)
        window = np.clip(nearest[:, None] + np.arange(-_WINDOW, _WINDOW + 1)[None, :], 0, wave.size - 1)
        sigma_v = np.hypot(catalogue["sigma_gas_kms"].to_numpy(float)[:, None], sigma_inst[window])
        fraction = 0.0
        for rest, share in components:
            mean = rest * (1.0 + z[:, None])
            sigma = mean * sigma_v / SPEED_OF_LIGHT_KMS
            fraction = fraction + share * (ndtr((upper[window] - mean) / sigma) - ndtr((lower[window] - mean) / sigma))
        noise = error[rows, window] * (upper[window] - lower[window])  # 1e-17 erg/s/cm^2 per channel
        good = (mask[rows, window] == 0) & np.isfinite(noise) & (noise > 0) \
            & (detector[window] == detector[nearest][:, None])
        on_grid = (centre >= lower[0]) & (centre <= upper[-1])
        signal = catalogue[column].to_numpy(float) * catalogue["fibre_fraction"].to_numpy(float) / FLUX_UNIT
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.where(good, (fraction / noise) ** 2, 0.0).sum(axis=1)
        out[column.removeprefix("flux_")] = np.where(on_grid, signal * np.sqrt(weight), 0.0)
    return pd.DataFrame(out, index=catalogue.index)


def dataset_line_signal_to_noise(dataset, chunk_size: int = 500) -> pd.DataFrame:
    """:func:`line_signal_to_noise` of every spectrum of a mock data set, ``chunk_size`` at a time.

    Parameters
    ----------
    dataset : mtopnet_core.store.Dataset
        A mock store: its catalogue holds the truth line fluxes.
    chunk_size : int
        Spectra whose errors are read at once (500: ~50 MB).

    Returns
    -------
    pandas.DataFrame
        One row per spectrum of the store, in its order.
    """
    parts = []
    for start in range(0, len(dataset), chunk_size):
        rows = np.arange(start, min(start + chunk_size, len(dataset)))
        arrays = dataset.read(rows)
        parts.append(line_signal_to_noise(dataset.catalogue.iloc[rows], arrays["error"], arrays["mask"]))
    return pd.concat(parts)


def measurable_redshift(snr: pd.DataFrame, strong: float = 7.0, second: float = 5.0) -> np.ndarray:
    """The paper's reference for Fig. 8: two lines detected, one at S/N > 7 and another at S/N > 5.

    Parameters
    ----------
    snr : pandas.DataFrame
        Output of :func:`line_signal_to_noise`.

    Returns
    -------
    numpy.ndarray, shape (N,), bool
    """
    ordered = -np.sort(-snr.to_numpy(float), axis=1)
    return (ordered[:, 0] > strong) & (ordered[:, 1] > second)


STRONG_LINE_SNR = 5.0
"""S/N above which a catalogue line counts as strong for the line head's score (issue 9's target)."""


def line_head_scores(probability: np.ndarray, z: np.ndarray, snr: pd.DataFrame | None = None) -> dict:
    """How well line-location probabilities find the lines: ranking and strong lines placed.

    Parameters
    ----------
    probability : numpy.ndarray, shape (N, 12217)
        Line-location probability per channel.
    z : numpy.ndarray, shape (N,)
        True redshifts.
    snr : pandas.DataFrame, optional
        :func:`line_signal_to_noise` of the same spectra; without it only the AUC is given.

    Returns
    -------
    dict
        ``auc``: ROC AUC against the line masks (:func:`~mtopnet_core.metrics.line_location_auc`);
        ``strong_found``: fraction of the catalogue lines with S/N > 5 that have a channel of
        probability >= 0.5 within 5 channels (the doublet [OII] at its mean wavelength), and
        ``n_strong``, how many there were (None without ``snr``).
    """
    z = np.asarray(z, float)
    scores = {"auc": line_location_auc(probability, line_location_labels(z)), "strong_found": None, "n_strong": None}
    if snr is None:
        return scores
    wave = grid.wavelength_grid()
    found, total = 0, 0
    for column, components in CATALOGUE_LINES.items():
        strong = np.nonzero(snr[column.removeprefix("flux_")].to_numpy(float) > STRONG_LINE_SNR)[0]
        centre = np.mean([rest for rest, _ in components]) * (1 + z[strong])
        channels = np.clip(np.searchsorted(wave, centre), 0, wave.size - 1)
        found += int(line_recovery(probability, strong, channels, LINE_HALF_WIDTH).sum())
        total += strong.size
    scores["strong_found"], scores["n_strong"] = (found / total if total else None), total
    return scores
