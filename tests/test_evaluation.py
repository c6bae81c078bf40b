"""Evaluation: calibration, screening, success fractions on hand-made cases, and the full report."""

import json

import numpy as np
import pandas as pd
import pytest

from mtopnet_core import grid
from mtopnet_core.evaluation import (
    gaussian_fit,
    interval_coverage,
    paper_subsets,
    pit_values,
    residual_histogram_range,
    screening_curve,
    screening_summary,
    success_table,
)


def gaussian_pdfs(centres: np.ndarray, sigma: float) -> np.ndarray:
    z = grid.redshift_bin_centres()
    pdf = np.exp(-0.5 * ((z[None] - centres[:, None]) / sigma) ** 2)
    return pdf / pdf.sum(axis=1, keepdims=True)


def test_pit_and_coverage_tell_calibrated_from_overconfident_pdfs():
    rng = np.random.default_rng(0)
    z_true = rng.uniform(1.0, 2.5, 3000)
    scatter = 0.02
    centres = z_true + rng.normal(0, scatter, z_true.size)
    calibrated = pit_values(gaussian_pdfs(centres, scatter), z_true)
    coverage = interval_coverage(calibrated)
    assert coverage["0.68"] == pytest.approx(0.68, abs=0.03) and coverage["0.95"] == pytest.approx(0.95, abs=0.02)
    assert np.histogram(calibrated, bins=5, range=(0, 1))[0].min() > 0.8 * 600
    overconfident = interval_coverage(pit_values(gaussian_pdfs(centres, scatter / 4), z_true))
    assert overconfident["0.68"] < 0.35
    # a PDF centred on the truth puts it at its median; NaN PDFs give NaN
    pit = pit_values(np.vstack([gaussian_pdfs(np.array([1.5]), 0.01), np.full(800, np.nan)]), np.array([1.5, 1.5]))
    assert pit[0] == pytest.approx(0.5, abs=0.01) and np.isnan(pit[1])


def test_gaussian_fit_ignores_catastrophic_outliers():
    rng = np.random.default_rng(1)
    residuals = np.concatenate([rng.normal(0.1, 0.15, 9500), rng.uniform(-3, 3, 500)])
    mu, sigma = gaussian_fit(residuals)
    assert mu == pytest.approx(0.1, abs=0.01) and sigma == pytest.approx(0.15, rel=0.08)


def test_gaussian_fit_resolves_a_narrow_redshift_bulk_beside_wide_failures():
    # the redshift case: a bulk 0.001 wide and 3% failures spread over +-0.6, which set the 1-99th
    # percentiles; bins that wide (~0.015) would return the bin width as sigma
    rng = np.random.default_rng(2)
    residuals = np.concatenate([rng.normal(0.0002, 0.001, 9700), rng.uniform(-0.6, 0.6, 300)])
    mu, sigma = gaussian_fit(residuals)
    assert mu == pytest.approx(0.0002, abs=1e-4) and sigma == pytest.approx(0.001, rel=0.08)
    lo, hi = residual_histogram_range(residuals)
    assert -0.02 < lo < -0.005 and 0.005 < hi < 0.02


def hand_catalogue() -> pd.DataFrame:
    # 2 h: 4 good (entropy 1) and 4 bad, of which 2 with entropy 3 and 2 with entropy 1; 8 h: 4 good, one with entropy 3
    z_true = np.full(16, 1.2)
    dz = np.array([0, 0, 0, 0, 0.3, 0.3, 0.3, 0.3, 0, 0, 0, 0, 0, 0, 0, 0])
    entropy = np.array([1, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1], float)
    t = np.array([2.0] * 8 + [8.0] * 8)
    return pd.DataFrame({"z_true": z_true, "z_peak": z_true + dz, "entropy": entropy, "skewness": 30 - 5 * entropy,
                         "t_exp_h": t, "m_h": 23.0, "galaxy_class": "star-forming", "flux_halpha": 2e-17})


def test_screening_summary_counts_what_it_should():
    table = screening_summary(hand_catalogue(), entropy_max=2.0)
    two = table.loc["2 h"]
    assert two["accuracy_before"] == 0.5 and two["accuracy_after"] == pytest.approx(4 / 6)
    assert two["rejected"] == pytest.approx(2 / 8) and two["false_rejections"] == 0
    assert two["missed_failures"] == pytest.approx(2 / 6)
    eight = table.loc["8 h"]
    assert eight["accuracy_before"] == eight["accuracy_after"] == 1.0
    assert eight["false_rejections"] == pytest.approx(1 / 8)


def test_success_table_and_paper_subsets():
    cat = hand_catalogue()
    subsets = paper_subsets(cat)
    assert subsets["MOONRISE-like"].sum() == 8  # star-forming at 2 h only
    table = success_table(cat)
    assert table.loc["2 h", "dz<0.01"] == 0.5 and table.loc["2 h", "dz<0.1"] == 0.5
    assert table.loc["all", "n"] == 16 and table.loc["8 h", "dz<0.003"] == 1.0


def test_success_by_bins_counts_values_inside_the_edges_only():
    from mtopnet_core.evaluation import success_by_bins

    values = np.array([18.0, 20.2, 20.4, 20.6, 21.5, 21.7, 30.0])
    success = np.array([True, True, False, True, True, True, False])
    centres, fraction, counts = success_by_bins(values, success, np.array([20.0, 21.0, 22.0]), min_count=2)
    assert counts.tolist() == [3, 2] and np.allclose(fraction, [2 / 3, 1.0])
    assert np.allclose(centres, [20.5, 21.5])


def test_screening_curve_runs_from_strict_to_complete():
    rng = np.random.default_rng(2)
    entropy = rng.uniform(0, 5, 1000)
    success = rng.uniform(size=1000) > entropy / 5  # low entropy, more likely right
    entropy[:10] = np.nan  # unprocessed: never kept
    curve = screening_curve(entropy, success)
    assert np.all(np.diff(curve["completeness"]) >= 0)
    assert curve["completeness"].iloc[-1] == pytest.approx(0.99)
    assert curve["accuracy"].iloc[0] > curve["accuracy"].iloc[-1] + 0.3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_evaluate_writes_the_figures_and_summary(small_survey, tiny_model, tmp_path):
    pytest.importorskip("keras")
    from mtopnet_core.batch import predict_store
    from mtopnet_core.cli import main
    from mtopnet_core.results import open_results

    predict_store(small_survey, tmp_path / "r", tiny_model, workers=1, progress=False)
    assert main(["evaluate", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "eval")]) == 0
    for name in ("fig4_residuals", "fig7_success_thresholds", "fig8_success_vs_mh", "fig11_failures",
                 "fig12_entropy_skewness", "fig13_umap", "screening", "calibration"):
        assert (tmp_path / "eval" / f"{name}.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n_spectra"] == 40 and summary["success_fractions"]["all"]["n"] == 40
    assert 0 <= summary["screening"]["entropy"]["all"]["rejected"] <= 1
    results = open_results(tmp_path / "r")
    assert np.isfinite(results.catalogue[["umap_x", "umap_y"]].to_numpy()).all()
    # Fig. 8's reference per exposure: the share measurable from two lines, from the store's own noise
    from mtopnet_core.evaluation import dataset_line_signal_to_noise, measurable_redshift, success_by_bins
    from mtopnet_core.store import open_dataset

    cat = results.catalogue
    measurable = measurable_redshift(dataset_line_signal_to_noise(open_dataset(small_survey), chunk_size=16))
    assert 0 < measurable.mean() < 1
    for name, curve in summary["success_vs_m_h"].items():
        if name.endswith(" h"):
            chosen = cat["t_exp_h"].to_numpy() == float(name.split(" h")[0])
            _, expected, _ = success_by_bins(cat["m_h"].to_numpy()[chosen], measurable[cat["row"]][chosen],
                                             np.arange(19.0, 27.01, 0.5))
            assert curve["measurable_two_lines"] == [None if np.isnan(f) else pytest.approx(f) for f in expected]
    # the line head scored against the masks and the store's strong lines
    lines = summary["line_head"]
    assert lines["n_spectra"] == 40 and 0 <= lines["auc"] <= 1 and lines["n_strong"] > 0
    # the map is kept as data: nothing in the results folder is pickled
    assert not list((tmp_path / "r").glob("*.joblib")) and not list((tmp_path / "r").glob("*.pkl"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_figure_label_names_the_threshold_asked_for(small_results, tmp_path, monkeypatch):
    from mtopnet_core import evaluation_report

    texts = []

    def keep_texts(fig, path):
        texts.extend(t.get_text() for t in fig.findobj(lambda artist: hasattr(artist, "get_text")))
        evaluation_report.plt.close(fig)

    monkeypatch.setattr(evaluation_report, "_save", keep_texts)
    evaluation_report.evaluate(small_results, tmp_path / "eval", threshold=0.02)
    labels = [t for t in texts if "Delta z| <" in t]
    assert len(labels) >= 3 and all("< 0.02" in t for t in labels), labels


def test_measurable_redshift_needs_one_line_above_7_and_another_above_5():
    import pandas as pd

    from mtopnet_core.evaluation import measurable_redshift

    snr = pd.DataFrame({"halpha": [8.0, 8.0, 30.0, 6.0], "oiii_5008": [5.5, 4.0, 0.0, 6.0], "hbeta": [0, 0, 0, 5.5]})
    assert measurable_redshift(snr).tolist() == [True, False, False, False]


def test_line_head_scores_count_strong_lines_a_head_places():
    import pandas as pd

    from mtopnet_core.evaluation import line_head_scores
    from mtopnet_core.labels import line_location_labels

    z = np.array([1.0, 1.4, 2.2])
    perfect = line_location_labels(z).astype(float)
    # H-alpha is strong in the first two spectra, [OIII] in the last; the rest are weak
    snr = pd.DataFrame({"halpha": [9.0, 6.0, 1.0], "hbeta": [1.0, 2.0, 3.0], "oiii_5008": [0.0, 0.0, 12.0],
                        "oii_3727_3730": [4.9, 0.0, 0.0], "nii_6585": [0.0, 0.0, 0.0]})
    scores = line_head_scores(perfect, z, snr)
    assert scores["auc"] > 0.999 and scores["strong_found"] == 1.0 and scores["n_strong"] == 3
    # a head drawing the lines of a wrong redshift finds none, and ranks no better than chance
    wrong = line_location_labels(z + 0.05).astype(float)
    assert line_head_scores(wrong, z, snr)["strong_found"] == 0.0
    assert line_head_scores(wrong, z)["auc"] < 0.6 and line_head_scores(wrong, z)["strong_found"] is None
