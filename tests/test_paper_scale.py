"""scripts/paper_scale.py, the GPU machine's one command, run here at a tiny size under JAX on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_paper_scale_script_simulates_trains_under_jax_calibrates_and_writes_a_model(tmp_path):
    from mtopnet_core.inference import load_trained_model, predict
    from mtopnet_core.store import open_dataset

    out = tmp_path / "model"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    tiny = ["--n", "48", "--n-calibration", "24", "--workers", "2", "--batch-size", "8", "--budget-s", "900",
            "--loader-threads", "2", "--steps-per-execution", "2", "--kernel-size", "5"]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_scale.py"), "--out", str(out),
                           "--work", str(tmp_path / "work"), "--max-epochs", "2", "--run-out",
                           str(tmp_path / "run.tar"), *tiny], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "model.json").read_text())
    assert meta["run"]["backend"] == "jax" and meta["data"]["n_spectra"] == 48 and meta["data"]["seed"] == 20261130
    assert meta["run"]["device"] == "cpu: cpu" and meta["run"]["epochs_after"] == 2
    assert meta["run"]["earlier_calls"] == []
    assert meta["history"]["epochs"] == 2 and meta["history"]["finished"]
    assert meta["calibration"]["data_seed"] == 20261131
    assert meta["model"]["kernel_size"] == 5  # the narrower network asked for (and kept on resume, below)
    assert (out / "model.keras").stat().st_size < 12e6  # weights only: it must come back from the machine
    # the folder is a model like any other: it loads and predicts here (TensorFlow)
    survey = open_dataset(tmp_path / "work" / "survey")
    out_pred = predict(load_trained_model(out), survey.spectra(slice(0, 4)))
    assert np.allclose(out_pred.redshift_pdf.sum(axis=1), 1.0, atol=1e-3)

    # another machine goes on from the archive: a fresh work folder, the same survey simulated again
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_scale.py"), "--out", str(tmp_path / "more"),
                            "--work", str(tmp_path / "elsewhere"), "--max-epochs", "3", "--resume-from",
                            str(tmp_path / "run.tar"), *tiny], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from epoch 2" in again.stderr
    history = (tmp_path / "more" / "history.csv").read_text().splitlines()
    assert history[1:3] == (out / "history.csv").read_text().splitlines()[1:3] and len(history) == 4
    more = json.loads((tmp_path / "more" / "model.json").read_text())
    assert more["history"]["epochs"] == 3 and more["run"]["epochs_after"] == 3
    # the first call's record travelled in the archive
    assert [c["epochs_after"] for c in more["run"]["earlier_calls"]] == [2]
    assert more["run"]["earlier_calls"][0]["arguments"]["work"] == str(tmp_path / "work")


@pytest.mark.multiprocess
def test_a_used_output_folder_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_scale.py"), "--out", str(tmp_path / "model"),
                           "--work", str(tmp_path / "work"), "--n", "8"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0 and "not empty" in done.stderr
