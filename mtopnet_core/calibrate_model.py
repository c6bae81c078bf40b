"""Calibrating a trained model folder on a mock data set (``mtopnet calibrate``).

The PDF calibration itself (temperature law, quantile map) is :mod:`mtopnet_core.calibration`,
which inference applies; this module runs the model to fit it, so it sits above inference and
the two never import each other.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from mtopnet_core.calibration import TemperatureFit, fit_pit_map, fit_temperature, pdf_temperatures, temper
from mtopnet_core.errors import UsageError
from mtopnet_core.evaluation import CATASTROPHIC_TARGET, catastrophic_among_kept, entropy_cut_for_catastrophic
from mtopnet_core.inference import load_trained_model, predict
from mtopnet_core.jsonio import write_json_atomic
from mtopnet_core.mc_dropout import HEADS_FILE
from mtopnet_core.parallel import progress_bar
from mtopnet_core.store import open_dataset

__all__ = ["calibrate_model"]

logger = logging.getLogger(__name__)


def calibrate_model(model_dir: str | os.PathLike, store: str | os.PathLike, out: str | os.PathLike,
                    batch_size: int = 256, progress: bool = True, mc_passes: int = 0,
                    catastrophic_target: float = CATASTROPHIC_TARGET) -> TemperatureFit:
    """Fit a model's temperature on a mock data set and write the calibrated model to ``out``.

    The network (``model.keras``) is copied unchanged; ``model.json`` gains a ``calibration``
    entry (temperature, the fit's numbers, the data set and its seed) and loses the source
    model's ``evaluation``. Any earlier calibration of the model is replaced: the fit uses the
    untempered PDFs.

    Parameters
    ----------
    model_dir : path
        A trained model folder.
    store : path
        A mock data set (with true redshifts) that the model was neither trained nor tested on.
    out : path
        New model folder; must not exist or be empty.
    batch_size : int
    progress : bool
        Show a progress bar.
    mc_passes : int
        If > 0, the calibrated model also predicts the data set with MC dropout of this many
        passes, and ``calibration["mc_screening"]`` records the entropy cut for such PDFs that
        keeps at most 0.3% catastrophic redshifts there (single-pass PDFs' confident failures
        pass any entropy cut; averaged over dropout passes they widen). ``predict`` hands the
        cut to the results of the same number of passes, and the app starts its slider there.
    catastrophic_target : float
        Largest share of catastrophic redshifts among the kept, for ``mc_passes``.

    Returns
    -------
    TemperatureFit

    Raises
    ------
    UsageError
        ``out`` is not empty, or the data set has no true redshifts.
    """
    out = Path(out)
    if mc_passes < 0 or mc_passes == 1:
        raise UsageError(f"MC dropout passes must be 0 (off) or at least 2, got {mc_passes}")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: not empty (the calibrated model needs a new folder)")
    trained = load_trained_model(model_dir)
    untempered = replace(trained, metadata={k: v for k, v in trained.metadata.items() if k != "calibration"})
    dataset = open_dataset(store)
    if "z" not in dataset.catalogue:
        raise UsageError(f"{store}: no true redshifts (column z); calibration needs a mock data set")
    pdfs = []
    with progress_bar(len(dataset), desc="calibrating", show=progress) as bar:
        for spectra in dataset.iter_chunks():
            pdfs.append(predict(untempered, spectra, batch_size=batch_size).redshift_pdf)
            bar.update(len(spectra))
    pdfs, z_true = np.concatenate(pdfs), dataset.catalogue["z"].to_numpy(float)
    fit = fit_temperature(pdfs, z_true)
    method = "temperature scaling by PDF entropy (NLL of the true redshift's bin)"
    try:
        quantile_map = {"pit_map": fit_pit_map(temper(pdfs, pdf_temperatures(pdfs, fit.to_dict())), z_true)}
        method += ", then quantile recalibration of the PIT (Kuleshov et al. 2018)"
        logger.info("%s: quantile map fitted on %d spectra in %d rounds", store, quantile_map["pit_map"]["n"],
                    quantile_map["pit_map"]["rounds"])
    except ValueError as exc:  # a small data set: the temperature alone
        logger.warning("%s: no quantile map (%s)", store, exc)
        quantile_map = {}
    calibration = {"method": method, **fit.to_dict(), **quantile_map, "data": Path(store).name,
                   "data_seed": dataset.metadata.get("seed"), "source_model": trained.path.name}
    if mc_passes > 0:
        calibrated = replace(trained, metadata={**untempered.metadata, "calibration": calibration})
        calibration["mc_screening"] = _mc_screening(calibrated, dataset, z_true, mc_passes, batch_size, progress,
                                                    catastrophic_target)
    out.mkdir(parents=True, exist_ok=True)
    # the same weights: an exported network stays valid (its record checks model.keras's bytes)
    for name in ("model.keras", "model.onnx", HEADS_FILE):
        if (trained.path / name).is_file():
            shutil.copy2(trained.path / name, out / name)
    # an evaluation of the source model no longer describes this one's PDFs
    kept = {k: v for k, v in untempered.metadata.items() if k != "evaluation"}
    write_json_atomic(out / "model.json", {**kept, "calibration": calibration})
    logger.info("%s: temperature %.3f at entropy %.2f, d ln T / dH %.3f (NLL %.3f -> %.3f on %d spectra of %s)",
                out, fit.temperature, fit.entropy_ref, fit.entropy_slope, fit.nll_before, fit.nll_after, fit.n, store)
    return fit


def _mc_screening(calibrated, dataset, z_true: np.ndarray, passes: int, batch_size: int, progress: bool,
                  target: float) -> dict:
    """The entropy cut for MC-dropout PDFs of ``passes`` passes, chosen on the calibration spectra."""
    entropy, z_peak = [], []
    with progress_bar(len(dataset), desc=f"MC dropout, {passes} passes", show=progress) as bar:
        for spectra in dataset.iter_chunks():
            summary = predict(calibrated, spectra, mc_passes=passes, batch_size=batch_size).summary
            entropy.append(summary.entropy)
            z_peak.append(summary.z_peak)
            bar.update(len(spectra))
    entropy, dz = np.concatenate(entropy), np.concatenate(z_peak) - z_true
    cut = entropy_cut_for_catastrophic(entropy, dz, target)
    record = {"passes": passes, "catastrophic_target": target, "entropy_max": cut,
              "catastrophic_kept": None if cut is None else catastrophic_among_kept(entropy, dz, cut),
              "rejected": None if cut is None else float(np.mean(~(entropy < cut)))}
    if cut is None:
        logger.warning("MC dropout: no entropy cut keeps at most %.1f%% catastrophic redshifts", 100 * target)
    else:
        logger.info("MC dropout (%d passes): entropy < %.2f keeps %.2f%% catastrophic, rejects %.1f%%", passes, cut,
                    100 * record["catastrophic_kept"], 100 * record["rejected"])
    return record
