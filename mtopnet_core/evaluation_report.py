"""``mtopnet evaluate``: the paper's evaluation figures and a machine-readable summary.

From a results folder of a mock test set (truth columns present) it writes:

- ``fig4_residuals.png``: predicted against true z, log M*, log SFR and the residual histograms
  with Gaussian fits (paper, Fig. 4);
- ``fig7_success_thresholds.png``: success fraction against the |Delta z| threshold for the
  paper's subsets (Fig. 7);
- ``fig8_success_vs_mh.png``: success fraction (|Delta z| below the threshold, paper 0.01) against m_H (Fig. 8),
  dashed: the paper's reference, the share measurable from two lines (S/N > 7 and > 5; needs the store);
- ``fig11_failures.png``: distributions of good and failed predictions in z, SFR, M*, H-alpha
  and [O III] flux (Fig. 11);
- ``fig12_entropy_skewness.png``: entropy and skewness of good and failed PDFs, 2 h and 8 h,
  with the screening thresholds (Fig. 12);
- ``fig13_umap.png``: the embedding map coloured by M*, SFR, H-alpha flux, z and class (Fig. 13);
- ``screening.png``: accuracy against completeness as the entropy threshold moves;
- ``calibration.png``: PIT histogram and interval coverage (beyond the paper), and, given MC-dropout
  results of the same spectra, the comparison with single-pass PDFs;
- ``summary.json``: every number of those figures.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtopnet_core.embedding import ensure_embedding_map  # noqa: E402
from mtopnet_core.errors import ResultsError  # noqa: E402
from mtopnet_core.evaluation import (  # noqa: E402
    CATALOGUE_LINES,
    CATASTROPHIC_DZ,
    SUCCESS_THRESHOLD,
    SUCCESS_THRESHOLDS,
    catastrophic_among_kept,
    dataset_line_signal_to_noise,
    delta_z,
    gaussian_fit,
    interval_coverage,
    line_head_scores,
    measurable_redshift,
    paper_subsets,
    pit_values,
    residual_histogram_range,
    screening_curve,
    screening_summary,
    success_by_bins,
    success_table,
)
from mtopnet_core.metrics import ENTROPY_THRESHOLD, SKEWNESS_THRESHOLD  # noqa: E402
from mtopnet_core.results import Results, open_results  # noqa: E402
from mtopnet_core.store import DatasetError, open_dataset  # noqa: E402

__all__ = ["evaluate", "PAPER_FIGURES"]

logger = logging.getLogger(__name__)

PAPER_FIGURES = {
    "success_0p01_before_after_screening": {"2 h": [0.77, 0.97], "8 h": [0.90, 0.99]},
    "rejected_by_screening": {"2 h": 0.27, "8 h": 0.12},
    "residual_sigma_dex": {"log_mstar": 0.15, "log_sfr": 0.22},
    "single_task_catastrophic_fraction": 0.05,
}
"""The paper's numbers (sections 4 and 5.2) that the summary is compared with."""

_REQUIRED = ("z_true", "log_mstar_true", "log_sfr_true", "t_exp_h", "m_h", "galaxy_class", "flux_halpha")
_EXPOSURE_COLOURS = {2.0: "tab:blue", 4.0: "tab:green", 8.0: "tab:red"}


def _density_hist(ax, values: np.ndarray, bins=None, **style) -> None:
    """A normalised step histogram of the values inside the bins; nothing where none are (the
    density of nothing is undefined)."""
    if isinstance(bins, np.ndarray):
        values = values[(values >= bins[0]) & (values <= bins[-1])]
    if values.size:
        ax.hist(values, bins="auto" if bins is None else bins, density=True, histtype="step", lw=2, **style)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _fig4(cat: pd.DataFrame, path: Path) -> dict:
    quantities = [("z", "z_true", "z_peak"), ("log M* [Msun]", "log_mstar_true", "log_mstar_pred"),
                  ("log SFR [Msun/yr]", "log_sfr_true", "log_sfr_pred")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), gridspec_kw={"height_ratios": [2, 1]}, layout="constrained")
    fits = {}
    for k, (label, true, pred) in enumerate(quantities):
        x, y = cat[true].to_numpy(float), cat[pred].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax = axes[0, k]
        ax.hexbin(x[ok], y[ok], gridsize=60, bins="log", cmap="viridis", mincnt=1)
        lims = [min(x[ok].min(), y[ok].min()), max(x[ok].max(), y[ok].max())]
        ax.plot(lims, lims, "k--", lw=1)
        ax.set(xlabel=f"true {label}", ylabel=f"predicted {label}")
        residual = y[ok] - x[ok]
        mu, sigma = gaussian_fit(residual)
        fits[true.replace("_true", "")] = {"mu": mu, "sigma": sigma}
        ax = axes[1, k]
        lo, hi = residual_histogram_range(residual)
        counts, edges, _ = ax.hist(residual, bins=80, range=(lo, hi), color="violet")
        grid_x = np.linspace(lo, hi, 300)
        width = edges[1] - edges[0]
        density = np.exp(-0.5 * ((grid_x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        ax.plot(grid_x, len(residual) * width * density, color="tab:blue")
        outside = np.mean((residual < lo) | (residual > hi))
        ax.set(xlabel=f"predicted - true {label}", ylabel="spectra",
               title=f"mu = {mu:.4f}, sigma = {sigma:.4f} ({outside:.1%} outside)")
    fig.suptitle(f"Predictions against truth, {len(cat)} test spectra (paper Fig. 4)")
    _save(fig, path)
    return fits


def _fig7(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    thresholds = list(SUCCESS_THRESHOLDS)
    for name, row in table.iterrows():
        if name == "all":
            continue
        hours = float(name.split(" h")[0]) if " h" in name else None
        colour = _EXPOSURE_COLOURS.get(hours, "grey" if name == "MOONRISE-like" else "darkviolet")
        style = "--" if name.endswith(" h") else "-"
        ax.plot(range(len(thresholds)), [row[f"dz<{t:g}"] for t in thresholds], style, marker="o", color=colour,
                label=f"{name} ({row['n']:.0f})")
    ax.set_xticks(range(len(thresholds)), [f"{t:g}" for t in thresholds])
    ax.set(xlabel="|Delta z| threshold", ylabel="fraction of successful predictions",
           title="Success against |Delta z| threshold (paper Fig. 7)")
    ax.legend(fontsize=8)
    _save(fig, path)


def _line_snr(results: Results) -> pd.DataFrame | None:
    """The catalogue lines' S/N in each results row (:func:`dataset_line_signal_to_noise`), from the
    mock's own line fluxes and noise; None when the results' store is not here or holds no line fluxes."""
    source = results.metadata.get("input", {})
    if source.get("kind") != "store" or "row" not in results.catalogue:
        return None
    try:
        dataset = open_dataset(source["path"])
    except DatasetError as exc:
        logger.warning("no two-line reference in Fig. 8: %s", exc)
        return None
    needed = {"z", "fibre_fraction", "sigma_gas_kms", *CATALOGUE_LINES}
    if not needed <= set(dataset.catalogue.columns):
        logger.warning("no two-line reference in Fig. 8: %s holds no line fluxes", dataset.path)
        return None
    logger.info("line S/N of %d spectra (the two-line reference, the line head's strong lines)", len(dataset))
    snr = dataset_line_signal_to_noise(dataset)
    return snr.iloc[results.catalogue["row"].to_numpy(int)].reset_index(drop=True)


LINE_HEAD_SAMPLE = 1000
"""Spectra (evenly spaced rows) on which the line head is scored (12 million channels for the AUC)."""


def _line_head(results: Results, snr: pd.DataFrame | None) -> dict:
    """:func:`line_head_scores` on :data:`LINE_HEAD_SAMPLE` processed rows."""
    cat = results.catalogue
    processed = np.nonzero((cat["problem"] == "").to_numpy())[0]
    if processed.size == 0:
        return {"n_spectra": 0, "auc": None, "strong_found": None, "n_strong": None}
    rows = processed[np.linspace(0, processed.size - 1, min(LINE_HEAD_SAMPLE, processed.size)).astype(int)]
    scores = line_head_scores(results.line_probability(rows), cat["z_true"].to_numpy(float)[rows],
                              None if snr is None else snr.iloc[rows].reset_index(drop=True))
    return {"n_spectra": int(rows.size), **scores}


def _fig8(cat: pd.DataFrame, subsets: dict, success: np.ndarray, threshold: float, path: Path,
          measurable: np.ndarray | None = None) -> dict:
    edges = np.arange(19.0, 27.01, 0.5)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    top.hist(cat["m_h"], bins=edges, color="lightgrey", edgecolor="grey")
    top.set(ylabel="spectra")
    curves = {}
    m_h = cat["m_h"].to_numpy()
    for name in [k for k in subsets if k.endswith(" h")] + ["MOONRISE-like", "bright H-alpha"]:
        mask = subsets[name]
        centres, fraction, counts = success_by_bins(m_h[mask], success[mask], edges)
        hours = float(name.split(" h")[0]) if name.endswith(" h") else None
        colour = _EXPOSURE_COLOURS.get(hours, "grey" if name == "MOONRISE-like" else "darkviolet")
        bottom.plot(centres, fraction, marker="o", color=colour, label=name)
        curves[name] = {"m_h": centres.tolist(), "fraction": [None if np.isnan(f) else float(f) for f in fraction],
                        "n": counts.tolist()}
        if measurable is not None and hours is not None:
            # the paper's reference: the share of redshifts that two detected lines would give
            _, reference, _ = success_by_bins(m_h[mask], measurable[mask], edges)
            bottom.plot(centres, reference, ls="--", color=colour, label=f"{name}: two lines (S/N > 7, > 5)")
            curves[name]["measurable_two_lines"] = [None if np.isnan(f) else float(f) for f in reference]
    bottom.set(xlabel="m_H [AB]", ylabel=f"success fraction (|Delta z| < {threshold:g})", ylim=(0, 1.02))
    bottom.legend(fontsize=7)
    top.set_title("Success against H-band magnitude (paper Fig. 8)"
                  + ("; dashed: measurable from two lines" if measurable is not None else ""))
    _save(fig, path)
    return curves


def _fig11(cat: pd.DataFrame, success: np.ndarray, threshold: float, path: Path) -> None:
    panels = [("z_true", "z", False), ("log_sfr_true", "log SFR", False), ("log_mstar_true", "log M*", False),
              ("flux_halpha", "log H-alpha flux", True), ("flux_oiii_5008", "log [O III] 5008 flux", True)]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (column, label, log) in zip(axes.flat, panels, strict=False):
        values = cat[column].to_numpy(float)
        if log:
            with np.errstate(divide="ignore"):
                values = np.log10(values)
        finite = np.isfinite(values)
        bins = np.linspace(*np.percentile(values[finite], [0.5, 99.5]), 30)
        _density_hist(ax, values[finite & success], bins=bins, color="tab:blue",
                      label=f"good ({(finite & success).sum()})")
        _density_hist(ax, values[finite & ~success], bins=bins, color="tab:red",
                      label=f"failed ({(finite & ~success).sum()})")
        ax.set(xlabel=label, ylabel="normalised")
    axes.flat[0].legend(fontsize=8)
    axes.flat[-1].axis("off")
    fig.suptitle(f"Good and failed predictions (|Delta z| < {threshold:g}) against physical properties "
                 "(paper Fig. 11)")
    _save(fig, path)


def _fig12(cat: pd.DataFrame, success: np.ndarray, path: Path) -> None:
    t = cat["t_exp_h"].to_numpy()
    hours = [h for h in (2.0, 8.0) if (t == h).any()] or sorted(np.unique(t))[:2]
    fig, axes = plt.subplots(len(hours), 3, figsize=(13, 4 * len(hours)), squeeze=False)
    entropy, skewness = cat["entropy"].to_numpy(float), cat["skewness"].to_numpy(float)
    for row, h in zip(axes, hours, strict=True):
        mask = (t == h) & np.isfinite(entropy)
        for good, colour, name in ((True, "tab:blue", "good"), (False, "tab:red", "failed")):
            sel = mask & (success == good)
            _density_hist(row[0], entropy[sel], bins=40, range=(0, np.nanmax(entropy)), color=colour,
                          label=f"{name} ({sel.sum()})")
            _density_hist(row[1], skewness[sel], bins=40, range=(0, np.nanmax(skewness)), color=colour)
            row[2].scatter(entropy[sel], skewness[sel], s=3, alpha=0.4, color=colour)
        for ax in (row[0], row[2]):
            ax.axvline(ENTROPY_THRESHOLD, color="orange")
        row[1].axvline(SKEWNESS_THRESHOLD, color="orange")
        row[2].axhline(SKEWNESS_THRESHOLD, color="orange")
        row[0].set(xlabel="entropy", ylabel="normalised", title=f"t_exp = {h:g} h")
        row[1].set(xlabel="skewness")
        row[2].set(xlabel="entropy", ylabel="skewness")
        row[0].legend(fontsize=8)
    fig.suptitle("Entropy and skewness of the redshift PDFs (paper Fig. 12)")
    _save(fig, path)


def _fig13(cat: pd.DataFrame, path: Path) -> None:
    panels = [("log_mstar_true", "log M*", "viridis"), ("log_sfr_true", "log SFR", "plasma"),
              ("flux_halpha", "log H-alpha flux", "magma"), ("z_true", "z", "cividis"),
              ("sersic_n", "Sersic index (1 star-forming, 4 quiescent)", "coolwarm")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.5))
    x, y = cat["umap_x"].to_numpy(float), cat["umap_y"].to_numpy(float)
    for ax, (column, label, cmap) in zip(axes.flat, panels, strict=False):
        if column not in cat:
            ax.axis("off")
            continue
        values = cat[column].to_numpy(float)
        if column == "flux_halpha":
            with np.errstate(divide="ignore"):
                values = np.log10(values)
        ok = np.isfinite(x) & np.isfinite(values)
        order = np.argsort(values[ok])
        art = ax.scatter(x[ok][order], y[ok][order], c=values[ok][order], s=2, cmap=cmap)
        fig.colorbar(art, ax=ax, label=label)
        ax.set(xticks=[], yticks=[])
    axes.flat[-1].axis("off")
    fig.suptitle("UMAP of the embedding (concatenated first dense layers of the z, M*, SFR heads; paper Fig. 13)")
    _save(fig, path)


def _screening_figure(cat: pd.DataFrame, success: np.ndarray, threshold: float, path: Path) -> dict:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    t = cat["t_exp_h"].to_numpy()
    curves = {}
    for h in sorted(np.unique(t)):
        mask = t == h
        curve = screening_curve(cat["entropy"].to_numpy(float)[mask], success[mask])
        colour = _EXPOSURE_COLOURS.get(float(h), "black")
        ax.plot(curve["completeness"], curve["accuracy"], color=colour, label=f"{h:g} h")
        kept = np.nan_to_num(cat["entropy"].to_numpy(float)[mask], nan=np.inf) < ENTROPY_THRESHOLD
        ax.plot(kept.mean(), success[mask][kept].mean() if kept.any() else np.nan, "o", color=colour)
        curves[f"{h:g} h"] = curve.iloc[::10].to_dict(orient="list")
    ax.set(xlabel="completeness (fraction kept)", ylabel=f"accuracy of the kept (|Delta z| < {threshold:g})",
           title=f"Screening by entropy (dots: entropy < {ENTROPY_THRESHOLD:g})")
    ax.legend()
    _save(fig, path)
    return curves


def _calibration_figure(pit: np.ndarray, coverage: dict, path: Path, mc: dict | None) -> None:
    n = 2 if mc else 1
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.5), squeeze=False)
    ax = axes[0, 0]
    ax.hist(pit[np.isfinite(pit)], bins=20, range=(0, 1), density=True, color="tab:blue", alpha=0.6,
            label="single pass")
    if mc:
        ax.hist(mc["pit"][np.isfinite(mc["pit"])], bins=20, range=(0, 1), density=True, histtype="step",
                color="black", lw=2, label=f"MC dropout ({mc['passes']} passes)")
    ax.axhline(1, color="grey", ls="--")
    ax.set(xlabel="PIT = CDF(z_true)", ylabel="density",
           title="68%: {:.2f}  95%: {:.2f} coverage".format(coverage["0.68"], coverage["0.95"]))
    ax.legend(fontsize=8)
    if mc:
        ax = axes[0, 1]
        ax.scatter(mc["width_single"], mc["width_mc"], s=2, alpha=0.4)
        lim = np.nanpercentile(np.concatenate([mc["width_single"], mc["width_mc"]]), 99)
        ax.plot([0, lim], [0, lim], "k--", lw=1)
        ax.set(xlim=(0, lim), ylim=(0, lim), xlabel="PDF width, single pass", ylabel="PDF width, MC-dropout mean",
               title="MC dropout widens the PDFs")
    _save(fig, path)


def _mc_comparison(results: Results, mc_results: Results, threshold: float) -> dict:
    cat, mc_cat = results.catalogue, mc_results.catalogue
    if not cat["object_id"].equals(mc_cat["object_id"]):
        raise ResultsError(f"{mc_results.path}: holds other spectra than {results.path}; cannot compare")
    pit = pit_values(mc_results.redshift_pdf(), mc_cat["z_true"].to_numpy(float))
    good = np.abs(delta_z(mc_cat)) < threshold
    cut = mc_results.mc_entropy_cut()
    screening = None if cut is None else {
        "entropy_max": cut,
        "catastrophic_kept": catastrophic_among_kept(mc_cat["entropy"].to_numpy(float), delta_z(mc_cat), cut),
        **screening_summary(mc_cat, cut, None, threshold).to_dict(orient="index")}
    return {
        "screening": screening,
        "passes": int(mc_results.metadata.get("mc_passes", 0)),
        "pit": pit,
        "coverage": interval_coverage(pit),
        "success": float(good.mean()),
        "width_single": cat["pdf_width"].to_numpy(float),
        "width_mc": mc_cat["pdf_width"].to_numpy(float),
        "log_mstar_sigma": gaussian_fit(mc_cat["log_mstar_pred"] - mc_cat["log_mstar_true"])[1],
        "log_sfr_sigma": gaussian_fit(mc_cat["log_sfr_pred"] - mc_cat["log_sfr_true"])[1],
        "median_log_mstar_spread": float(np.nanmedian(mc_cat.get("log_mstar_spread", np.nan))),
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate(results_path: str | os.PathLike, out: str | os.PathLike, mc_results_path: str | os.PathLike | None = None,
             threshold: float = SUCCESS_THRESHOLD, seed: int = 0) -> dict:
    """Evaluate a results folder of a mock test set; write the figures and ``summary.json``.

    Parameters
    ----------
    results_path : str or path-like
        Results of ``mtopnet predict`` on a store with truth columns.
    out : str or path-like
        Folder for the PNGs and ``summary.json`` (created).
    mc_results_path : str or path-like, optional
        Results of the same spectra with ``--mc-passes``, for the MC-dropout comparison.
    threshold : float
        |Delta z| of a successful prediction (paper: 0.01).
    seed : int
        Seed of the UMAP map, fitted and saved into the results folder if it has none.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    results = open_results(results_path)
    cat = results.catalogue
    missing = [c for c in _REQUIRED if c not in cat]
    if missing:
        raise ResultsError(f"{results.path}: no truth columns ({', '.join(missing)}); evaluation needs a mock test set")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dz = delta_z(cat)
    success = np.abs(dz) < threshold
    subsets = paper_subsets(cat)
    table = success_table(cat)
    logger.info("figures of %d spectra into %s", len(cat), out)
    residual_fits = _fig4(cat, out / "fig4_residuals.png")
    _fig7(table, out / "fig7_success_thresholds.png")
    snr = _line_snr(results)
    mh_curves = _fig8(cat, subsets, success, threshold, out / "fig8_success_vs_mh.png",
                      None if snr is None else measurable_redshift(snr))
    _fig11(cat, success, threshold, out / "fig11_failures.png")
    _fig12(cat, success, out / "fig12_entropy_skewness.png")
    ensure_embedding_map(results, seed=seed)
    _fig13(results.catalogue, out / "fig13_umap.png")
    curves = _screening_figure(cat, success, threshold, out / "screening.png")
    pit = pit_values(results.redshift_pdf(), cat["z_true"].to_numpy(float))
    coverage = interval_coverage(pit)
    mc = _mc_comparison(results, open_results(mc_results_path), threshold) if mc_results_path else None
    _calibration_figure(pit, coverage, out / "calibration.png", mc)

    summary = {
        "results": str(results.path), "model": results.metadata.get("model", {}).get("version"),
        "n_spectra": len(cat), "n_not_processed": int((cat["problem"] != "").sum()),
        "threshold_dz": threshold,
        "success_fractions": table.to_dict(orient="index"),
        "catastrophic_fraction": float(np.mean(np.abs(np.nan_to_num(dz, nan=np.inf)) > CATASTROPHIC_DZ)),
        "residual_gaussian_fits": residual_fits,
        "screening": {
            "entropy": {"threshold": ENTROPY_THRESHOLD,
                        **screening_summary(cat, ENTROPY_THRESHOLD, None, threshold).to_dict(orient="index")},
            "skewness": {"threshold": SKEWNESS_THRESHOLD,
                         **screening_summary(cat, None, SKEWNESS_THRESHOLD, threshold).to_dict(orient="index")},
        },
        "screening_curves": curves,
        "success_vs_m_h": mh_curves,
        "line_head": _line_head(results, snr),
        "calibration": {"coverage": coverage, "pit_histogram": np.histogram(pit[np.isfinite(pit)], bins=10,
                                                                            range=(0, 1))[0].tolist()},
        "paper": PAPER_FIGURES,
    }
    if mc:
        summary["mc_dropout"] = {k: v for k, v in mc.items() if k not in ("pit", "width_single", "width_mc")}
        summary["mc_dropout"]["median_pdf_width_single"] = float(np.nanmedian(mc["width_single"]))
        summary["mc_dropout"]["median_pdf_width_mc"] = float(np.nanmedian(mc["width_mc"]))
    summary = _jsonable(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
