"""Temperature scaling of the redshift PDFs: the transform, the fit, and a calibrated model folder."""

import numpy as np
import pytest
from scipy.stats import entropy

from mtopnet_core import grid
from mtopnet_core.calibration import fit_temperature, pdf_temperatures, temper


def gaussian_pdfs(centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Bin-integrated Gaussian PDFs on the redshift bins, shape (N, 800)."""
    from scipy.stats import norm

    edges = grid.redshift_bin_edges()
    cdf = norm.cdf((edges[None, :] - centres[:, None]) / sigmas[:, None])
    pdf = np.diff(cdf, axis=1)
    return pdf / pdf.sum(axis=1, keepdims=True)


def calibrated_mock(seed: int, sigma_range: tuple[float, float], n: int = 3000):
    """Widths, calibrated Gaussian PDFs and true redshifts drawn from each PDF."""
    rng = np.random.default_rng(seed)
    sigmas = rng.uniform(*sigma_range, n)
    centres = rng.uniform(0.9, 2.9, n)
    z_true = centres + sigmas * rng.standard_normal(n)
    return sigmas, gaussian_pdfs(centres, sigmas), z_true


def test_temper_keeps_the_peak_and_the_normalisation():
    rng = np.random.default_rng(0)
    pdf = rng.dirichlet(np.full(grid.N_Z_BINS, 0.05), size=20).astype(np.float32)
    pdf[3] = np.nan
    assert np.array_equal(temper(pdf, 1.0), pdf, equal_nan=True)
    for temperature in (0.3, 2.0):
        tempered = temper(pdf, temperature)
        good = np.isfinite(pdf).all(axis=1)
        assert np.isnan(tempered[~good]).all()
        np.testing.assert_allclose(tempered[good].sum(axis=1), 1.0, rtol=1e-5)
        assert np.array_equal(tempered[good].argmax(axis=1), pdf[good].argmax(axis=1))
        # below 1 it sharpens, above 1 it widens
        change = entropy(tempered[good], axis=1) - entropy(pdf[good], axis=1)
        assert (change < 0).all() if temperature < 1 else (change > 0).all()
    # tempering twice multiplies the exponents
    np.testing.assert_allclose(temper(temper(pdf[:2], 0.5), 0.5), temper(pdf[:2], 0.25), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="positive"):
        temper(pdf, 0.0)


def test_fit_recovers_the_temperature_of_too_wide_pdfs():
    # calibrated Gaussian PDFs (the truth drawn from each), then widened: p**0.6 is a Gaussian
    # sqrt(1/0.6) times wider, which a temperature of 0.6 undoes exactly
    _, calibrated, z_true = calibrated_mock(1, (0.004, 0.02))
    n = len(z_true)
    widened = temper(calibrated, 1 / 0.6)
    fit = fit_temperature(widened, z_true)
    assert fit.temperature == pytest.approx(0.6, abs=0.04)
    assert fit.nll_after < fit.nll_before and fit.n == n
    # already calibrated PDFs need no temperature
    assert fit_temperature(calibrated, z_true).temperature == pytest.approx(1.0, abs=0.06)
    # truths outside the bins are left out; none usable is an error
    assert fit_temperature(widened, np.where(np.arange(n) < 10, 5.0, z_true)).n == n - 10
    with pytest.raises(ValueError, match="no spectrum"):
        fit_temperature(widened[:3], np.full(3, np.nan))


def test_the_temperature_follows_the_entropy_where_narrow_pdfs_are_too_wide_and_broad_ones_too_narrow():
    sigmas, calibrated, z_true = calibrated_mock(2, (0.003, 0.03))
    # miscalibrated as our networks are: narrow PDFs widened, broad ones sharpened
    wrong = np.where(sigmas < 0.012, 1 / 0.6, 1 / 1.6)
    distorted = temper(calibrated, wrong)
    one = fit_temperature(distorted, z_true, by_entropy=False)
    law = fit_temperature(distorted, z_true)
    assert one.entropy_slope == 0.0 and law.entropy_slope > 0.2  # broader PDFs get a higher temperature
    assert law.nll_after < one.nll_after - 0.01
    repaired = temper(distorted, pdf_temperatures(distorted, law.to_dict()))
    narrow = sigmas < 0.012
    # the broad group is widened more than the narrow one, towards what undoes each distortion
    t = pdf_temperatures(distorted, law.to_dict())
    assert np.median(t[~narrow]) > np.median(t[narrow]) + 0.2
    assert np.isfinite(repaired).all()


def test_calibrate_command_writes_a_model_whose_pdfs_are_tempered(small_survey, tiny_model, tmp_path, capsys):
    from mtopnet_core.cli import main
    from mtopnet_core.inference import load_trained_model, predict
    from mtopnet_core.store import open_dataset

    out = tmp_path / "calibrated"
    assert main(["calibrate", "--model", str(tiny_model), "--data", str(small_survey), "--out", str(out),
                 "--quiet"]) == 0
    assert "temperature" in capsys.readouterr().out
    raw, calibrated = load_trained_model(tiny_model), load_trained_model(out)
    assert raw.temperature == 1.0 and calibrated.temperature != 1.0
    assert calibrated.metadata["calibration"]["data_seed"] == 7
    assert (out / "model.keras").read_bytes() == (tiny_model / "model.keras").read_bytes()
    data = open_dataset(small_survey)
    spectra = data.spectra(slice(0, 6))
    before, after = predict(raw, spectra), predict(calibrated, spectra)
    temperatures = pdf_temperatures(before.redshift_pdf, calibrated.metadata["calibration"])
    np.testing.assert_allclose(after.redshift_pdf, temper(before.redshift_pdf, temperatures), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(after.summary.z_peak, before.summary.z_peak)
    np.testing.assert_allclose(after.quantities["log_mstar"], before.quantities["log_mstar"])
    # the new folder must be new
    assert main(["calibrate", "--model", str(tiny_model), "--data", str(small_survey), "--out", str(out),
                 "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_the_quantile_map_flattens_the_pit_of_a_fresh_mock():
    """PDFs twice too wide: the map fitted on one mock makes a second one's PIT flat and its intervals honest."""
    from mtopnet_core.calibration import apply_pit_map, fit_pit_map
    from mtopnet_core.evaluation import interval_coverage, pit_values

    def too_wide(seed: int):
        sigmas, _, z_true = calibrated_mock(seed, (0.005, 0.05), n=6000)
        rng = np.random.default_rng(seed + 1)
        centres = z_true + sigmas * rng.standard_normal(z_true.size)  # the truth is one sigma from the centre
        return gaussian_pdfs(centres, 2 * sigmas), z_true  # but the PDFs say two

    calibration_pdfs, calibration_z = too_wide(1)
    pit_map = fit_pit_map(calibration_pdfs, calibration_z)
    pdfs, z_true = too_wide(2)
    before = pit_values(pdfs, z_true)
    after = pit_values(apply_pit_map(pdfs, pit_map), z_true)
    flat = np.isfinite(after).sum() / 10
    assert np.histogram(before[np.isfinite(before)], 10, (0, 1))[0].max() > 1.5 * flat  # humped
    assert np.all(np.abs(np.histogram(after[np.isfinite(after)], 10, (0, 1))[0] / flat - 1) < 0.2)
    coverage = interval_coverage(after)
    assert interval_coverage(before)["0.68"] > 0.85
    assert 0.65 <= coverage["0.68"] <= 0.71 and 0.93 <= coverage["0.95"] <= 0.97
    # a proper PDF again: non-negative, normalised, NaN rows stay NaN
    mapped = apply_pit_map(np.vstack([pdfs[:3], np.full((1, grid.N_Z_BINS), np.nan)]), pit_map)
    assert (mapped[:3] >= 0).all() and np.allclose(mapped[:3].sum(axis=1), 1, atol=1e-5)
    assert np.isnan(mapped[3]).all()


def test_the_identity_map_changes_nothing_and_a_model_applies_its_map():
    from mtopnet_core.calibration import apply_pit_map, calibrate_pdfs

    _, pdfs, _ = calibrated_mock(3, (0.01, 0.05), n=20)
    identity = {"u": [0.0, 1.0], "r": [0.0, 1.0]}
    np.testing.assert_allclose(apply_pit_map(pdfs, identity), pdfs, atol=1e-6)
    sharpen = {"u": [0.0, 0.3, 0.7, 1.0], "r": [0.0, 0.1, 0.9, 1.0]}
    calibration = {"temperature": 0.8}
    tempered = calibrate_pdfs(pdfs, calibration)
    np.testing.assert_allclose(tempered, temper(pdfs, 0.8), rtol=1e-5, atol=1e-8)
    mapped = calibrate_pdfs(pdfs, {**calibration, "pit_map": sharpen})
    np.testing.assert_allclose(mapped, apply_pit_map(tempered, sharpen), rtol=1e-5, atol=1e-8)
    assert (entropy(mapped, axis=1) < entropy(tempered, axis=1)).all()  # a steeper middle: narrower PDFs


def test_too_few_spectra_for_a_quantile_map_are_refused():
    from mtopnet_core.calibration import fit_pit_map

    _, pdfs, z_true = calibrated_mock(4, (0.01, 0.05), n=100)
    with pytest.raises(ValueError, match="needs at least"):
        fit_pit_map(pdfs, z_true)


def test_the_entropy_cut_for_a_catastrophic_target_is_the_largest_that_meets_it():
    from mtopnet_core.evaluation import catastrophic_among_kept, entropy_cut_for_catastrophic

    rng = np.random.default_rng(3)
    entropy = rng.uniform(0, 4, 20000)
    # catastrophic redshifts (|dz| > 0.5) grow common with the entropy: 0.1% below 1, 2% above
    dz = np.where(rng.random(entropy.size) < np.where(entropy < 1.0, 0.001, 0.02), 0.9, 0.001)
    cut = entropy_cut_for_catastrophic(entropy, dz, target=0.003)
    assert catastrophic_among_kept(entropy, dz, cut) <= 0.003 < catastrophic_among_kept(entropy, dz, cut + 0.05)
    assert 1.0 <= cut <= 1.5
    assert entropy_cut_for_catastrophic(entropy, np.full(entropy.size, 0.9)) is None  # all wrong: no cut
    assert np.isnan(catastrophic_among_kept(entropy, dz, 0.0))  # nothing kept


def test_calibrate_with_mc_passes_records_the_cut_of_its_own_mc_predictions(small_survey, tiny_model, tmp_path):
    """Also: an exported model stays exported when calibrated (MC dropout in NumPy, same seed, same bytes)."""
    import shutil

    from mtopnet_core.calibrate_model import calibrate_model
    from mtopnet_core.cli import main
    from mtopnet_core.evaluation import ENTROPY_CUTS, catastrophic_among_kept, entropy_cut_for_catastrophic
    from mtopnet_core.inference import load_trained_model, predict
    from mtopnet_core.store import open_dataset

    exported = tmp_path / "exported"
    shutil.copytree(tiny_model, exported)
    assert main(["export", "--model", str(exported)]) == 0
    assert main(["calibrate", "--model", str(exported), "--data", str(small_survey), "--out", str(tmp_path / "plain"),
                 "--quiet"]) == 0
    plain, data = load_trained_model(tmp_path / "plain"), open_dataset(small_survey)
    assert plain.mc_heads is not None  # heads.npz came along with its record
    # the calibrated model's MC predictions, chunk by chunk as the calibration makes them
    entropy, z_peak = [], []
    for spectra in data.iter_chunks():
        summary = predict(plain, spectra, mc_passes=3).summary
        entropy.append(summary.entropy)
        z_peak.append(summary.z_peak)
    entropy, dz = np.concatenate(entropy), np.concatenate(z_peak) - data.catalogue["z"].to_numpy(float)
    # a target the tiny model meets with some cut but not with all (its own catastrophic share is
    # high): the lowest share among the kept of any cut that keeps something
    target = min(catastrophic_among_kept(entropy, dz, cut) for cut in ENTROPY_CUTS if (entropy < cut).any())
    expected = entropy_cut_for_catastrophic(entropy, dz, target)
    assert expected is not None and expected < 6.5
    calibrate_model(exported, small_survey, tmp_path / "mc", progress=False, mc_passes=3, catastrophic_target=target)
    record = load_trained_model(tmp_path / "mc").metadata["calibration"]["mc_screening"]
    assert record["passes"] == 3 and record["catastrophic_target"] == target
    assert record["entropy_max"] == expected
    assert record["catastrophic_kept"] == catastrophic_among_kept(entropy, dz, expected) <= target
    assert main(["calibrate", "--model", str(tiny_model), "--data", str(small_survey), "--out", str(tmp_path / "x"),
                 "--mc-passes", "1", "--quiet"]) == 2
