"""PDF metrics on hand-made PDFs: a delta, a flat PDF, two peaks, a Gaussian."""

import numpy as np
import pytest
from scipy import stats

from mtopnet_core import grid
from mtopnet_core.labels import redshift_pdf_labels
from mtopnet_core.metrics import screen, success_fraction, summarise_pdfs

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
