"""Saliency maps: shape, sign, agreement with finite differences, and rows of unusable spectra."""

import numpy as np
import pytest

pytest.importorskip("keras")

from mtopnet_core.inference import load_trained_model  # noqa: E402
from mtopnet_core.preprocessing import preprocess  # noqa: E402
from mtopnet_core.saliency import saliency_for_spectra, saliency_maps  # noqa: E402
from mtopnet_core.spectra import Spectra
from mtopnet_core.store import open_dataset  # noqa: E402


def test_saliency_is_the_gradient_of_the_peak_probability(small_survey, tiny_model):
    trained = load_trained_model(tiny_model)
    ds = open_dataset(small_survey)
    pre = preprocess(ds.spectra(slice(0, 3)), trained.preprocessing)
    lines, continuum = pre.lines[:1], pre.continuum[:1]
    x_cont = trained.standardiser.continuum(continuum)
    pdf = trained.model.predict({"spectrum": lines[..., None], "continuum": x_cont}, verbose=0)["redshift"]
    peak = int(pdf.argmax())
    sal = saliency_maps(trained, lines, continuum)
    assert sal.shape == (1, 12217) and np.all(sal >= 0) and sal.max() > 0
    # central finite differences on the three most salient channels agree with the gradient
    for channel in np.argsort(sal[0])[-3:]:
        step = 1e-3  # small enough not to cross the ReLUs' kinks (2e-3 crossed one), large against float32 rounding
        up, down = lines.copy(), lines.copy()
        up[0, channel] += step
        down[0, channel] -= step
        p_up, p_down = (trained.model.predict({"spectrum": x[..., None], "continuum": x_cont}, verbose=0)["redshift"]
                        [0, peak] for x in (up, down))
        assert abs(p_up - p_down) / (2 * step) == pytest.approx(sal[0, channel], rel=0.1, abs=1e-6)


def test_unusable_spectra_get_nan_saliency(small_survey, tiny_model):
    trained = load_trained_model(tiny_model)
    ds = open_dataset(small_survey)
    data = ds.read(slice(0, 2))
    flux = data["flux"].copy()
    flux[1] = 0.0
    sal = saliency_for_spectra(trained, Spectra(flux, ds.sky, data["error"], data["mask"]))
    assert np.isfinite(sal[0]).all() and np.isnan(sal[1]).all()
