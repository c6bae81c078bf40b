"""Preprocessing (paper, section 3.1) and training labels, on real simulated spectra."""

import json

import numpy as np
import pytest

from mtopnet_core import grid
from mtopnet_core.assets import shipped_model_dir
from mtopnet_core.conventions import SKY_MASK_THRESHOLD
from mtopnet_core.labels import line_location_labels, redshift_pdf_labels, task_labels
from mtopnet_core.preprocessing import PreprocessingConfig, Standardiser, preprocess, running_median
from mtopnet_core.spectra import Spectra
from mtopnet_core.store import open_dataset

WAVE = np.asarray(grid.wavelength_grid())


def test_a_pure_continuum_gives_an_almost_zero_line_spectrum(simulator, galaxy):
    row = galaxy(log_sfr=-12.0, log_mstar=10.5)  # no lines
    model = simulator.simulate(row, noise=False).model
    out = preprocess(Spectra(model, simulator.sky.emission))
    assert out.problems == [None]
    raw_residual = (model - running_median(np.where(out.masked, np.nan, model), 1000))[~out.masked]
    # the running median follows a smooth continuum: residuals are a few percent of it at most
    assert np.median(np.abs(raw_residual)) < 0.03 * np.median(model)
    # whereas the same galaxy with lines has them standing out at the top of the normalised spectrum
    with_lines = simulator.simulate(galaxy(z=1.0, log_sfr=1.5, log_mstar=10.5), noise=False).model
    lines = preprocess(Spectra(with_lines, simulator.sky.emission)).lines[0]
    strong = [np.argmin(np.abs(WAVE - rest * 2.0)) for rest in (6564.6, 5008.2, 4862.7, 3729.9)]
    assert min(abs(lines.argmax() - s) for s in strong) <= 3
    assert lines.max() == pytest.approx(1.0)


def test_masked_channels_never_leak_into_the_output(small_survey):
    ds = open_dataset(small_survey)
    data = ds.read(slice(0, 8))
    out = preprocess(Spectra(data["flux"], ds.sky, data["error"], data["mask"]))
    sky_masked = ds.sky > SKY_MASK_THRESHOLD
    assert np.all(out.masked[:, sky_masked]) and np.all(out.lines[out.masked] == 0)
    # changing the flux in masked channels, even to NaN or huge values, changes nothing
    poisoned = data["flux"].copy()
    poisoned[:, sky_masked] = 1e6
    poisoned[:, np.flatnonzero(sky_masked)[::2]] = np.nan
    again = preprocess(Spectra(poisoned, ds.sky, data["error"], data["mask"]))
    assert np.array_equal(again.lines, out.lines) and np.array_equal(again.continuum, out.continuum)
    assert out.lines.max() == pytest.approx(1.0) and out.continuum.shape == (8, 10)


def test_running_median_does_not_cross_the_band_gap():
    flux = np.where(WAVE < 14000, 1.0, 5.0)[None, :]
    continuum = running_median(flux, 1000)
    assert np.allclose(continuum[0, WAVE < 14000], 1.0) and np.allclose(continuum[0, WAVE > 14000], 5.0)


def test_bad_spectra_are_flagged_and_the_rest_processed(small_survey):
    ds = open_dataset(small_survey)
    data = ds.read(slice(0, 4))
    flux = data["flux"].copy()
    flux[1] = 0.0
    flux[2] = np.nan
    flux[3] = -np.abs(flux[3]) - 10 + np.linspace(0, -5, 12217)  # falling, negative everywhere
    names = list(ds.catalogue["object_id"][:4])
    out = preprocess(Spectra(flux, ds.sky, names=names), config=PreprocessingConfig())
    assert out.problems[0] is None
    assert "all-zero" in out.problems[1] and names[1] in out.problems[1]
    assert "usable" in out.problems[2]
    assert out.usable.tolist() == [True, False, False, out.problems[3] is None]
    assert np.all(out.lines[~out.usable] == 0)
    with pytest.raises(ValueError, match="12217"):
        preprocess(Spectra(flux[:, :100], ds.sky))


def test_spectra_split_over_threads_give_the_same_inputs_in_order(small_survey, monkeypatch):
    import threading

    import mtopnet_core.preprocessing as preprocessing

    ds = open_dataset(small_survey)
    flux = ds.read(slice(None))["flux"].copy()
    flux[[5, 33]] = 0.0  # rejected ones in both halves keep their places
    spectra = Spectra(flux, ds.sky, error=ds.read(slice(None))["error"], names=list(ds.catalogue["object_id"]))
    one = preprocess(spectra)
    medians = []
    real = preprocessing.running_median
    monkeypatch.setattr(preprocessing, "running_median",
                        lambda values, window: (medians.append((threading.current_thread().name, len(values))),
                                                real(values, window))[1])
    split = preprocess(spectra, threads=3)
    # at most one thread per 16 spectra: two of 20
    assert sorted(n for _, n in medians) == [20, 20] and len({name for name, _ in medians}) == 2
    for field in ("lines", "continuum", "masked"):
        assert np.array_equal(getattr(split, field), getattr(one, field), equal_nan=field != "masked")
    assert split.problems == one.problems and split.problems[5] and split.problems[33]
    medians.clear()
    preprocess(spectra[:31], threads=2)  # fewer than two threads' worth: one call
    assert [n for _, n in medians] == [31]


def test_continuum_samples_interpolate_over_every_known_channel():
    """Ten samples per spectrum: np.interp over the channels whose continuum is known, the same
    bits whether both neighbours of every sample are known (read alone) or a wholly masked
    window lies around a sample."""
    from mtopnet_core.preprocessing import _continuum_samples

    rng = np.random.default_rng(11)
    continuum = rng.normal(5, 1, (40, grid.N_CHANNELS)).astype(np.float32)
    positions = np.linspace(0, grid.N_CHANNELS - 1, 10)
    for i in range(0, 40, 2):  # every other spectrum: a gap of 300-3000 channels over a sample
        centre = int(positions[i % 10])
        width = int(rng.integers(300, 3000))
        continuum[i, max(centre - width // 2, 0):centre + width // 2 + 1] = np.nan
    continuum[1, 5000:9000] = np.nan  # a gap between samples
    usable = np.ones(40, dtype=bool)
    usable[3] = False
    samples = _continuum_samples(continuum, usable, 10)
    index = np.arange(grid.N_CHANNELS)
    for i in range(40):
        known = np.isfinite(continuum[i])
        expected = np.interp(positions, index[known], continuum[i][known]) if usable[i] else np.zeros(10)
        assert np.array_equal(samples[i], expected.astype(np.float32)), i
    assert np.isfinite(samples).all() and np.ptp(samples[0]) > 0


def test_standardiser_round_trip(small_survey):
    ds = open_dataset(small_survey)
    cat = ds.catalogue
    out = preprocess(Spectra(ds.read(slice(None))["flux"], ds.sky))
    std = Standardiser.fit(out.continuum, cat)
    scaled = std.continuum(out.continuum)
    assert np.allclose(scaled.mean(axis=0), 0, atol=1e-5) and np.allclose(scaled.std(axis=0), 1, atol=1e-4)
    for name in ("log_mstar", "log_sfr"):
        standardised = std.label(name, cat[name])
        assert abs(standardised.mean()) < 1e-9 and abs(standardised.std() - 1) < 1e-9
        assert np.allclose(std.physical(name, standardised), cat[name])
    assert Standardiser.from_dict(std.to_dict()) == std


def test_standardiser_reads_and_writes_the_shipped_models_format():
    stored = json.loads((shipped_model_dir() / "model.json").read_text())["standardiser"]
    assert Standardiser.from_dict(stored).to_dict() == stored


def test_redshift_labels_are_normalised_gaussians():
    z = np.array([0.7015, 1.2345, 3.0])
    labels = redshift_pdf_labels(z)
    assert labels.shape == (3, 800) and np.allclose(labels.sum(axis=1), 1, atol=1e-6)
    centres = grid.redshift_bin_centres()
    mean = (labels * centres).sum(axis=1)
    # sigma = 0.001 is a third of a bin: the PDF is centred on the true z to within half a bin
    assert np.allclose(mean, z, atol=0.0015)
    assert np.array_equal(labels.argmax(axis=1), grid.redshift_to_bin(z))
    width = np.sqrt((labels[1] * (centres - mean[1]) ** 2).sum())
    assert 0.0005 < width < 0.003
    assert np.array_equal(redshift_pdf_labels(z, sigma=0).argmax(axis=1), grid.redshift_to_bin(z))


def test_line_location_labels_mark_lines_on_the_grid():
    labels = line_location_labels(np.array([1.0, 2.0]))
    assert labels.shape == (2, 12217) and labels.dtype == np.uint8
    halpha = np.argmin(np.abs(WAVE - 6564.6 * 2.0))
    assert labels[0, halpha - 5:halpha + 6].all() and not labels[0, halpha + 30]
    # at z = 2, Halpha (19 694 A) is off the grid; [OIII] 5008 (15 025 A) is on it
    assert not labels[1, WAVE > 17990].any()
    oiii = np.argmin(np.abs(WAVE - 5008.2 * 3.0))
    assert labels[1, oiii]
    assert 0.005 < labels.mean() < 0.1


def test_task_labels_follow_each_spectrums_catalogue_row(small_survey):
    ds = open_dataset(small_survey)
    cat = ds.catalogue
    std = Standardiser.fit(preprocess(ds.spectra(slice(None))).continuum, cat)
    labels = task_labels(cat.iloc[[5, 2]], std)
    for name in ("log_mstar", "log_sfr"):
        assert labels[name].shape == (2, 1) and labels[name].dtype == np.float32
        np.testing.assert_allclose(labels[name][:, 0], (cat[name].to_numpy()[[5, 2]] - cat[name].mean())
                                   / cat[name].std(ddof=0), rtol=1e-5)
    assert list(labels["redshift"].argmax(axis=1)) == list(grid.redshift_to_bin(cat["z"].to_numpy()[[5, 2]]))
    assert labels["line_location"].shape == (2, 12217) and not np.array_equal(*labels["line_location"])
