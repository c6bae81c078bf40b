"""Inference with a (briefly) trained model: outputs, bad spectra, MC dropout, model checks."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("keras")

from mtopnet_core.inference import ModelError, load_trained_model, predict  # noqa: E402
from mtopnet_core.spectra import Spectra
from mtopnet_core.store import open_dataset  # noqa: E402


@pytest.fixture(scope="module")
def trained_folder(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def spectra(small_survey):
    ds = open_dataset(small_survey)
    return ds, ds.read(slice(0, 6))


def test_predictions_have_the_documented_shapes_and_units(trained_folder, spectra):
    ds, data = spectra
    trained = load_trained_model(trained_folder)
    names = list(ds.catalogue.object_id[:6])
    out = predict(trained, Spectra(data["flux"], ds.sky, data["error"], data["mask"], names))
    assert out.redshift_pdf.shape == (6, 800) and np.allclose(out.redshift_pdf.sum(axis=1), 1, atol=1e-4)
    assert out.line_probability.shape == (6, 12217)
    assert np.all((out.line_probability >= 0) & (out.line_probability <= 1))
    assert np.all((out.summary.z_peak >= 0.7) & (out.summary.z_peak <= 3.1))
    # M* and SFR come back in physical units (dex), near the training labels' range
    assert np.all(np.abs(out.quantities["log_mstar"] - ds.catalogue.log_mstar.mean()) < 3)
    assert out.problems == [None] * 6 and out.names == names
    again = predict(trained, Spectra(data["flux"], ds.sky, data["error"], data["mask"]))
    assert np.array_equal(again.redshift_pdf, out.redshift_pdf)  # deterministic without MC dropout


def test_a_bad_spectrum_is_reported_and_the_rest_processed(trained_folder, spectra):
    ds, data = spectra
    flux = data["flux"].copy()
    flux[2] = 0.0
    out = predict(load_trained_model(trained_folder), Spectra(flux, ds.sky, names=list("abcdef")))
    assert out.problems[2] == "c: all-zero spectrum"
    assert np.all(np.isnan(out.redshift_pdf[2])) and np.isnan(out.summary.z_peak[2])
    assert np.isnan(out.quantities["log_sfr"][2])
    assert np.all(np.isfinite(out.redshift_pdf[[0, 1, 3, 4, 5]]))


def test_mc_dropout_gives_a_spread_and_keeps_normalisation(trained_folder, spectra):
    ds, data = spectra
    trained = load_trained_model(trained_folder)
    out = predict(trained, Spectra(data["flux"], ds.sky), mc_passes=5)
    assert np.allclose(out.redshift_pdf.sum(axis=1), 1, atol=1e-4)
    assert np.all(out.quantity_spreads["log_mstar"] > 0) and np.all(out.redshift_pdf_spread.max(axis=1) > 0)
    single = predict(trained, Spectra(data["flux"], ds.sky))
    assert not np.array_equal(out.quantities["log_mstar"], single.quantities["log_mstar"])
    # the batch normalisation was left in inference mode and trainable again
    assert all(layer.trainable for layer in trained.model.layers)
    with pytest.raises(ValueError, match="mc_passes"):
        predict(trained, Spectra(data["flux"], ds.sky), mc_passes=1)


def test_model_files_are_checked(trained_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained_folder, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["grid_fingerprint"] = "0000"
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="another wavelength grid"):
        load_trained_model(copy)
    meta["grid_fingerprint"] = json.loads((trained_folder / "model.json").read_text())["grid_fingerprint"]
    meta["redshift_bins"]["n"] = 500
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="redshift bins"):
        load_trained_model(copy)
    shutil.copy(trained_folder / "model.json", copy / "model.json")
    (copy / "model.keras").write_bytes(b"not a keras file")
    with pytest.raises(ModelError, match=r"model\.keras: not a Keras model file \(damaged"):
        load_trained_model(copy)
    with pytest.raises(ModelError, match="missing"):
        load_trained_model(tmp_path / "nowhere")
