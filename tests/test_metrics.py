"""PDF metrics on hand-made PDFs: a delta, a flat PDF, two peaks, a Gaussian."""

import numpy as np
import pytest
from scipy import stats

from mtopnet_core import grid
from mtopnet_core.labels import redshift_pdf_labels
from mtopnet_core.metrics import _local_maxima, pdf_entropy, screen, success_fraction, summarise_pdfs

CENTRES = grid.redshift_bin_centres()


def test_delta_flat_and_two_peaks():
    delta = np.zeros(800)
    delta[100] = 1.0
    flat = np.full(800, 1 / 800)
    two = np.zeros(800)
    two[200], two[600] = 0.6, 0.4
    s = summarise_pdfs(np.stack([delta, flat, two]))
    assert s.entropy[0] == pytest.approx(0.0) and s.entropy[1] == pytest.approx(np.log(800))
    assert s.skewness[0] == pytest.approx(stats.skew(delta)) and s.skewness[0] > 25
    assert s.skewness[1] == 0.0  # a flat PDF has no asymmetry
    assert s.entropy[2] == pytest.approx(-(0.6 * np.log(0.6) + 0.4 * np.log(0.4)))
    assert s.z_peak[0] == pytest.approx(CENTRES[100]) and s.width[0] == pytest.approx(0.0, abs=1e-9)
    assert s.width[1] == pytest.approx(2.4 / np.sqrt(12), rel=1e-3)  # uniform over 2.4 in z
    assert s.z_second[2] == pytest.approx(CENTRES[600]) and s.p_second[2] == pytest.approx(0.4 / 0.6)
    assert np.isnan(s.z_second[0]) and s.p_second[0] == 0
    assert s.rms[0] == pytest.approx(np.sqrt(1 / 800))
    assert s.p_within_0p01[0] == 1.0 and s.p_within_0p01[2] == pytest.approx(0.6)


def test_paper_thresholds_separate_narrow_from_broad_pdfs():
    narrow = redshift_pdf_labels(np.array([1.2]), sigma=0.001)
    broad = redshift_pdf_labels(np.array([1.2]), sigma=0.2)
    s = summarise_pdfs(np.vstack([narrow, broad]))
    assert s.entropy[0] < 2 < s.entropy[1]
    assert s.skewness[0] > 20 > s.skewness[1]
    assert screen(s.entropy, s.skewness).tolist() == [True, False]
    assert screen(s.entropy, s.skewness, entropy_max=None, skewness_min=20).tolist() == [True, False]


def _hard_pdfs(rng: np.random.Generator) -> np.ndarray:
    """PDFs that exercise every branch of the peak search: narrow and broad peaks, noise (many
    maxima closer than 4 bins, so the distance rule decides), plateaus and ties (coarsely
    rounded values), zeros at the ends, a flat row."""
    n = 300
    z = rng.uniform(0.7, 3.0, (n, 3))
    sigma = rng.choice([0.002, 0.01, 0.1], (n, 3))
    pdf = sum(w * np.exp(-0.5 * ((CENTRES[None] - z[:, k, None]) / sigma[:, k, None]) ** 2)
              for k, w in enumerate((1.0, 0.5, 0.2)))
    pdf[::3] += rng.random((len(pdf[::3]), 800)) * 0.3  # noise
    pdf[1::3] = np.round(pdf[1::3] * 4) / 4 + 1e-3  # plateaus, ties
    pdf[2::9, :50] = 0.0
    pdf[2::9, -50:] = 0.0
    pdf[5] = 1.0
    pdf[7] = np.tile([0.2, 0.6], 400)  # equal maxima 2 bins apart: scipy's order decides
    pdf[8, 100:109] = [0.1, 0.9, 0.1, 0.9, 0.1, 0.9, 0.2, 0.9, 0.1]
    return pdf


def test_peak_search_and_statistics_equal_scipys():
    """The local maxima, entropy and skewness are computed without scipy.stats / scipy.signal (their
    import cost ~1 s per prediction process); they must give scipy's values exactly."""
    from scipy.signal import find_peaks

    pdf = _hard_pdfs(np.random.default_rng(5))
    rows, bins = _local_maxima(pdf)
    for i, row in enumerate(pdf):
        expected = find_peaks(np.concatenate([[0.0], row, [0.0]]), distance=4)[0] - 1
        assert bins[rows == i].tolist() == expected.tolist(), f"row {i}"
    assert sum(len(find_peaks(row)[0]) > len(bins[rows == i]) for i, row in enumerate(pdf)) > 50  # distance used
    normalised = pdf / pdf.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pdf_entropy(pdf), stats.entropy(pdf, axis=1), rtol=1e-12)
    s = summarise_pdfs(pdf)
    varied = np.ptp(normalised, axis=1) > 0
    np.testing.assert_allclose(s.skewness[varied], stats.skew(normalised[varied], axis=1), rtol=1e-9)
    np.testing.assert_allclose(s.entropy, stats.entropy(pdf, axis=1), rtol=1e-12)


def test_second_solution_is_the_highest_maximum_beyond_the_window():
    from scipy.signal import find_peaks

    pdf = _hard_pdfs(np.random.default_rng(6))
    pdf /= pdf.sum(axis=1, keepdims=True)
    s = summarise_pdfs(pdf)
    for i, row in enumerate(pdf):
        maxima = find_peaks(np.concatenate([[0.0], row, [0.0]]), distance=4)[0] - 1
        maxima = maxima[np.abs(CENTRES[maxima] - CENTRES[row.argmax()]) > 0.01]
        if maxima.size == 0:
            assert np.isnan(s.z_second[i]) and s.p_second[i] == 0, f"row {i}"
            continue
        best = maxima[np.argmax(row[maxima])]
        assert s.z_second[i] == CENTRES[best] and s.p_second[i] == pytest.approx(row[best] / row.max(), rel=1e-12), i
    assert np.isfinite(s.z_second).sum() > 100


def test_success_fraction_and_bad_input():
    assert success_fraction([1.0, 1.2, 2.0], [1.005, 1.1, 2.0], 0.01) == pytest.approx(2 / 3)
    assert np.isnan(success_fraction([], [], 0.01))
    with pytest.raises(ValueError, match="800"):
        summarise_pdfs(np.ones((2, 10)))
    with pytest.raises(ValueError, match="non-negative"):
        summarise_pdfs(np.zeros((1, 800)))


def test_pdf_peaks_lists_solutions_highest_first():
    from mtopnet_core import grid
    from mtopnet_core.metrics import pdf_peaks

    z = grid.redshift_bin_centres()
    pdf = np.exp(-0.5 * ((z - 1.2) / 0.004) ** 2) + 0.5 * np.exp(-0.5 * ((z - 2.1) / 0.004) ** 2)
    pdf /= pdf.sum()
    peaks = pdf_peaks(pdf)
    assert len(peaks) == 2
    assert peaks[0][0] == pytest.approx(1.2, abs=0.002) and peaks[0][1] == 1.0
    assert peaks[1][0] == pytest.approx(2.1, abs=0.002) and peaks[1][1] == pytest.approx(0.5, rel=0.05)
    assert peaks[0][2] == pytest.approx(2 / 3, rel=0.02)
    assert pdf_peaks(np.full(800, np.nan)) == []


def test_line_location_auc_scores_a_head_by_its_ranking_per_spectrum():
    from mtopnet_core.labels import line_location_labels
    from mtopnet_core.metrics import line_location_auc, line_recovery

    z = np.array([0.9, 1.3, 1.7, 2.2])
    labels = line_location_labels(z)
    rng = np.random.default_rng(0)
    perfect = labels * 0.9 + rng.uniform(0, 0.05, labels.shape)
    assert line_location_auc(perfect, labels) > 0.999
    # a head that outputs the same vector for every spectrum (the per-channel prior) ranks poorly
    prior_vector = line_location_labels(rng.uniform(0.7, 3.0, 500)).mean(axis=0)
    prior = np.broadcast_to(prior_vector, labels.shape)
    assert line_location_auc(prior, labels) < line_location_auc(perfect, labels) - 0.2
    rows, channels = np.nonzero(labels)
    assert line_recovery(perfect, rows, channels).all()
    shifted = np.roll(perfect, 40, axis=1)  # every line 40 channels off
    assert line_recovery(shifted, rows[::11], channels[::11]).mean() < 0.2
    with pytest.raises(ValueError, match="single class"):
        line_location_auc(perfect, np.zeros_like(labels))
