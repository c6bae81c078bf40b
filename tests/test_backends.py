"""The model is backend-agnostic Keras 3: a model trained under TensorFlow predicts the same under JAX."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("jax")

SCRIPT = """
import json, sys
import numpy as np
import keras
from mtopnet_core.inference import load_trained_model, predict
from mtopnet_core.saliency import saliency_for_spectra
from mtopnet_core.store import open_dataset
ds = open_dataset(sys.argv[2])
spectra = ds.spectra(slice(0, 4))
trained = load_trained_model(sys.argv[1])
out = predict(trained, spectra)
sal = saliency_for_spectra(trained, spectra)
json.dump({"backend": keras.backend.backend(), "pdf": out.redshift_pdf.tolist(),
           "mstar": out.quantities["log_mstar"].tolist(), "saliency_sum": np.nansum(sal, axis=1).tolist()}, sys.stdout)
"""


def run_under(backend: str, model, data) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(model), str(data)], env=env, capture_output=True,
                          text=True, check=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.multiprocess
def test_jax_backend_gives_the_tensorflow_predictions_and_saliency(small_survey, tiny_model):
    tf_out, jax_out = run_under("tensorflow", tiny_model, small_survey), run_under("jax", tiny_model, small_survey)
    assert (tf_out["backend"], jax_out["backend"]) == ("tensorflow", "jax")
    assert np.allclose(tf_out["pdf"], jax_out["pdf"], atol=1e-5)
    assert np.allclose(tf_out["mstar"], jax_out["mstar"], atol=1e-4)
    assert np.allclose(tf_out["saliency_sum"], jax_out["saliency_sum"], rtol=1e-3)
