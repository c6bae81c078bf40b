"""A data set's report: analogues of the paper's Fig. 1 (population) and Fig. 2 (spectra), as PNG,
plus a JSON summary of the distributions."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtopnet_core import grid  # noqa: E402
from mtopnet_core.conventions import SKY_MASK_THRESHOLD  # noqa: E402
from mtopnet_core.lines import lines_in_range  # noqa: E402
from mtopnet_core.simulate.cosmology import age_gyr  # noqa: E402
from mtopnet_core.store import Dataset, open_dataset  # noqa: E402

__all__ = ["make_report", "summarise", "plot_population", "plot_example_spectra"]

logger = logging.getLogger(__name__)

_MARKED_LINES = {"[O II]": "[OII]", "H β": "Hβ", "[O III]": "[OIII]", "H α": "Hα"}

PAPER_POPULATION: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "z": ((0.7, 2.9), (0.7, 1.0)),
    "log_mstar": ((8.0, 11.2), (8.9, 9.1)),
    "log_sfr": ((-2.0, 3.0), (np.log10(2.0), np.log10(3.0))),
    "m_h": ((19.0, 27.0), (24.0, 25.0)),
}
"""The paper's stated range and peak of each Fig. 1 histogram (section 2; z "peaking towards the
low end", M* near 1e9 Msun, SFR at 2-3 Msun/yr, m_H mostly 19-27 with most galaxies at 24-25)."""


def summarise(dataset: Dataset) -> dict:
    """Key numbers of a data set: size, ranges, peaks and fractions of the truth catalogue."""
    cat = dataset.catalogue

    def peak(values: np.ndarray, bins: np.ndarray) -> float:
        counts, edges = np.histogram(values, bins=bins)
        return float(0.5 * (edges[counts.argmax()] + edges[counts.argmax() + 1]))

    log_sfr = cat["log_sfr"].to_numpy()
    classes = cat["galaxy_class"].value_counts(normalize=True)
    exposures = cat["t_exp_h"].value_counts(normalize=True).sort_index()
    return {
        "n_spectra": len(cat),
        "seed": dataset.metadata.get("seed"),
        "z_range": [float(cat["z"].min()), float(cat["z"].max())],
        "z_peak": peak(cat["z"], np.arange(0.7, 3.05, 0.1)),
        "log_mstar_range": [float(cat["log_mstar"].min()), float(cat["log_mstar"].max())],
        "log_mstar_peak": peak(cat["log_mstar"], np.arange(8.0, 11.6, 0.25)),
        "log_sfr_percentiles_1_50_99": [float(v) for v in np.percentile(log_sfr, [1, 50, 99])],
        "sfr_peak": float(10 ** peak(log_sfr, np.arange(-2.0, 3.01, 0.2))),
        "m_h_percentiles_1_50_99": [float(v) for v in np.percentile(cat["m_h"], [1, 50, 99])],
        "m_h_peak": peak(cat["m_h"], np.arange(17.0, 28.0, 0.5)),
        "class_fractions": {str(k): float(v) for k, v in classes.items()},
        "exposure_fractions": {f"{k:g}h": float(v) for k, v in exposures.items()},
        "median_log_flux_halpha": float(np.median(np.log10(cat["flux_halpha"]))),
        "sky_masked_fraction": float(np.mean(dataset.sky > SKY_MASK_THRESHOLD)),
        "paper": {**{k: {"range": [float(v) for v in r], "peak": [round(float(v), 3) for v in p]}
                     for k, (r, p) in PAPER_POPULATION.items()}, "median_log_flux_halpha": -17.0},
    }


def plot_population(catalogue: pd.DataFrame, path: Path) -> Path:
    """Fig. 1 analogue: histograms of z, M*, SFR, m_H; M*-SFR plane coloured by Halpha flux."""
    fig = plt.figure(figsize=(12, 9), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.3])
    axes = left.subplots(4, 1)
    columns = [("z", "redshift", np.arange(0.7, 3.05, 0.05)),
               ("log_mstar", "log M* [Msun]", np.arange(8.0, 11.6, 0.1)),
               ("log_sfr", "log SFR [Msun/yr]", np.arange(-2.5, 3.6, 0.1)),
               ("m_h", "m_H [AB]", np.arange(17.0, 28.0, 0.2))]
    for ax, (col, label, bins) in zip(axes, columns, strict=True):
        ax.hist(catalogue[col], bins=bins, color="0.4")
        (low, high), (peak_low, peak_high) = PAPER_POPULATION[col]
        ax.axvspan(low, high, color="tab:orange", alpha=0.08, label="paper's range")
        ax.axvspan(peak_low, peak_high, color="tab:orange", alpha=0.35, label="paper's peak")
        ax.set_xlabel(label)
        ax.set_ylabel("N")
    axes[0].legend(loc="upper right")
    top, bottom = right.subplots(2, 1, height_ratios=[2, 1])
    log_ha = np.log10(catalogue["flux_halpha"].to_numpy())
    order = np.argsort(log_ha)
    points = top.scatter(catalogue["log_mstar"].to_numpy()[order], catalogue["log_sfr"].to_numpy()[order],
                         c=log_ha[order], s=3, cmap="viridis", vmin=-19, vmax=-15, rasterized=True)
    fig.colorbar(points, ax=top, label="log F(Hα) [erg/s/cm²]")
    mass = np.linspace(8, 11.5, 50)
    for z, colour in ((1.0, "tab:blue"), (2.0, "tab:red")):
        t = float(age_gyr(z))
        top.plot(mass, (0.84 - 0.026 * t) * mass - (6.51 - 0.11 * t), color=colour,
                 label=f"Speagle+14 main sequence, z = {z:g}")
    top.legend(loc="lower right")
    top.set_xlabel("log M* [Msun]")
    top.set_ylabel("log SFR [Msun/yr]")
    bottom.hist(log_ha, bins=np.arange(-20, -13.9, 0.1), color="0.4")
    bottom.axvline(-17, color="tab:orange", label="10⁻¹⁷ erg/s/cm²")
    bottom.set_xlabel("log F(Hα) [erg/s/cm²]")
    bottom.set_ylabel("N")
    bottom.legend()
    fig.suptitle(f"Mock MOONS survey: {len(catalogue)} galaxies (analogue of the paper's Fig. 1)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pick_examples(catalogue: pd.DataFrame, rng: np.random.Generator) -> list[int]:
    """Rows near z ~ 1 with 2 h exposures and F(Halpha) ~ 1e-15, 10^-16.5, 10^-17.5 (paper Fig. 2)."""
    rows = []
    for target in (-15.0, -16.5, -17.5):
        distance = np.abs(np.log10(catalogue["flux_halpha"].to_numpy()) - target)
        distance += 0.5 * np.abs(catalogue["z"].to_numpy() - 1.0)
        distance += np.where(catalogue["t_exp_h"].to_numpy() == 2.0, 0.0, 1.0)
        candidates = np.argsort(distance)[:5]
        rows.append(int(rng.choice(candidates)))
    return rows


def plot_example_spectra(dataset: Dataset, path: Path, seed: int = 0) -> Path:
    """Fig. 2 analogue: three spectra of decreasing Halpha flux, whole range and Halpha zoom."""
    cat = dataset.catalogue
    rows = _pick_examples(cat, np.random.default_rng(seed))
    arrays = dataset.read(np.array(rows))
    wave = dataset.wavelength
    sky_masked = dataset.sky > SKY_MASK_THRESHOLD
    # a NaN at the start of each channel breaks the drawn line across the band gaps
    breaks = np.zeros(wave.size, dtype=bool)
    breaks[[part.start for part in grid.channel_slices()[1:]]] = True
    fig, axes = plt.subplots(3, 2, figsize=(14, 9), width_ratios=[3, 1], layout="constrained")
    for k, row in enumerate(rows):
        record = cat.iloc[row]
        flux = np.where(sky_masked | breaks, np.nan, arrays["flux"][k])
        error = np.where(sky_masked | breaks, np.nan, arrays["error"][k])
        z = record["z"]
        for ax in axes[k]:
            ax.plot(wave, flux, lw=0.4, color="k")
            ax.plot(wave, error, lw=0.4, color="tab:red", alpha=0.6)
            for line, observed in lines_in_range(z, wave[0], wave[-1]):
                if line.name in _MARKED_LINES:
                    ax.axvline(observed, color="tab:red", lw=0.6, alpha=0.5)
        for line, observed in lines_in_range(z, wave[0], wave[-1]):
            if line.name in _MARKED_LINES and line.wavelength not in (3727.1, 4960.3):
                axes[k, 0].annotate(_MARKED_LINES[line.name], (observed, 1.0), xycoords=("data", "axes fraction"),
                                    fontsize=8, color="tab:red", ha="center", va="bottom")
        axes[k, 0].set_xlim(wave[0], wave[-1])
        finite = flux[np.isfinite(flux)]
        low, high = np.percentile(finite, [0.5, 99.8])
        axes[k, 0].set_ylim(low - 0.1 * (high - low), high + 0.3 * (high - low))
        axes[k, 0].set_title(f"{record['object_id']}  z = {z:.3f}  F(Hα) = {record['flux_halpha']:.1e}  "
                             f"{record['galaxy_class']}  t = {record['t_exp_h']:g} h", fontsize=9)
        centre = 6564.6 * (1 + z)
        axes[k, 1].set_xlim(centre - 150, centre + 150)
        zoom = (wave > centre - 150) & (wave < centre + 150) & np.isfinite(flux)
        if zoom.any():
            lo, hi = np.nanmin(flux[zoom]), np.nanmax(flux[zoom])
            axes[k, 1].set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.1 * (hi - lo + 1e-3))
        axes[k, 1].set_title("Hα" if 6400 < centre < 18000 else "Hα off the grid", fontsize=9)
        axes[k, 0].set_ylabel("F [1e-17 erg/s/cm²/Å]")
    for ax in axes[-1]:
        ax.set_xlabel("observed wavelength [Å, vacuum]")
    fig.suptitle("Example mock spectra, sky-masked channels blank, error in red "
                 "(analogue of the paper's Fig. 2)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_report(data: str | os.PathLike, out: str | os.PathLike, seed: int = 0) -> list[Path]:
    """Write ``fig1_population.png``, ``fig2_spectra.png`` and ``summary.json`` for a data set.

    Parameters
    ----------
    data : str or path-like
        Data set folder.
    out : str or path-like
        Report folder (created).
    seed : int
        Seed for picking the example spectra.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    dataset = open_dataset(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summarise(dataset), indent=2))
    written = [plot_population(dataset.catalogue, out / "fig1_population.png"),
               plot_example_spectra(dataset, out / "fig2_spectra.png", seed=seed), summary_path]
    logger.info("report written to %s", out)
    return written
