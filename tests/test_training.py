"""Training: split, learning-rate schedule, streaming batches, a short run that resumes."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")

from mtopnet_core import grid  # noqa: E402
from mtopnet_core.model import ModelConfig  # noqa: E402
from mtopnet_core.preprocessing import PreprocessingConfig, preprocess  # noqa: E402
from mtopnet_core.simulate.survey import simulate_survey  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402
from mtopnet_core.training import (  # noqa: E402
    StoreBatches,
    TrainConfig,
    cache_inputs,
    export_run,
    fit_standardiser,
    learning_rate,
    split_rows,
    train,
)

from conftest import SMALL  # noqa: E402


def test_split_is_seeded_disjoint_and_complete():
    split = split_rows(1000, 3)
    sizes = {k: len(v) for k, v in split.items()}
    assert sizes == {"train": 700, "validation": 150, "test": 150}
    assert np.array_equal(np.sort(np.concatenate(list(split.values()))), np.arange(1000))
    assert np.array_equal(split_rows(1000, 3)["test"], split["test"])
    assert not np.array_equal(split_rows(1000, 4)["test"], split["test"])
    with pytest.raises(ValueError):
        split_rows(10, 0, (0.5, 0.5, 0.5))


def test_learning_rate_schedule_follows_the_paper():
    config = TrainConfig()
    assert learning_rate(0, config) == pytest.approx(0.005)
    assert learning_rate(25, config) == pytest.approx(0.00275)
    assert learning_rate(50, config) == pytest.approx(0.0005) == learning_rate(99, config)


def test_cached_inputs_equal_preprocessing_and_are_reused(small_survey, tmp_path):
    ds = open_dataset(small_survey)
    cache = cache_inputs(ds, tmp_path / "inputs.zarr", PreprocessingConfig(), progress=False)
    pre = preprocess(ds.spectra(slice(0, 16)), PreprocessingConfig())
    assert np.array_equal(cache["usable"][:16], pre.usable)
    assert np.array_equal(cache["lines"][:16][pre.usable], pre.lines[pre.usable])
    assert np.array_equal(cache["continuum"][:16][pre.usable], pre.continuum[pre.usable])
    stamp = (tmp_path / "inputs.zarr" / "lines" / "zarr.json").stat().st_mtime_ns
    cache_inputs(ds, tmp_path / "inputs.zarr", PreprocessingConfig(), progress=False)
    assert (tmp_path / "inputs.zarr" / "lines" / "zarr.json").stat().st_mtime_ns == stamp
    cache_inputs(ds, tmp_path / "inputs.zarr", PreprocessingConfig(median_window=501), progress=False)
    assert (tmp_path / "inputs.zarr" / "lines" / "zarr.json").stat().st_mtime_ns != stamp


def test_batches_cover_each_row_once_per_epoch(small_survey, tmp_path):
    ds = open_dataset(small_survey)
    cache = cache_inputs(ds, tmp_path / "inputs.zarr", PreprocessingConfig(), progress=False)
    rows = split_rows(len(ds), 1)["train"]
    std = fit_standardiser(cache, ds.catalogue, rows)
    batches = StoreBatches(cache, ds.catalogue, rows, std, batch_size=5, seed=2)
    seen = np.concatenate(batches._batches)
    usable_rows = rows[cache["usable"][:][rows]]
    assert np.array_equal(np.sort(seen), usable_rows)
    x, y = batches[0]
    assert x["spectrum"].shape[1:] == (12217, 1) and y["redshift"].shape[1] == grid.N_Z_BINS
    first_epoch = [b.copy() for b in batches._batches]
    batches.on_epoch_end()
    assert any(not np.array_equal(a, b) for a, b in zip(first_epoch, batches._batches, strict=False))


@pytest.mark.parametrize("reader", ["chunk files", "zarr"])
def test_training_batches_have_one_size_and_the_rows_own_inputs_across_chunks(small_survey, tmp_path, reader,
                                                                              monkeypatch):
    if reader == "zarr":  # a cache whose layout ChunkedRows does not know is read through Zarr
        monkeypatch.setattr("mtopnet_core.training.ChunkedRows.open", lambda folder: None)
    ds = open_dataset(small_survey)
    cache = cache_inputs(ds, tmp_path / "inputs.zarr", PreprocessingConfig(), progress=False)
    rows = split_rows(len(ds), 1)["train"]
    std = fit_standardiser(cache, ds.catalogue, rows)
    n_usable = int(cache["usable"][:][rows].sum())
    batches = StoreBatches(cache, ds.catalogue, rows, std, batch_size=6, seed=3, drop_remainder=True)
    assert len(batches) == n_usable // 6 and n_usable % 6  # a short last batch was there to leave out
    spanning = 0
    for _ in range(3):  # epochs
        for index in range(len(batches)):
            picked = batches._batches[index]
            x, y = batches[index]
            assert x["spectrum"].shape == (6, grid.N_CHANNELS, 1) and y["redshift"].shape == (6, grid.N_Z_BINS)
            # each spectrum's own preprocessed input and true redshift, also when the batch spans two chunks
            np.testing.assert_array_equal(x["spectrum"][..., 0], cache["lines"][:][picked])
            np.testing.assert_array_equal(x["continuum"], std.continuum(cache["continuum"][:][picked]))
            truth = std.label("log_mstar", ds.catalogue["log_mstar"].to_numpy()[picked])
            np.testing.assert_array_equal(y["log_mstar"].ravel(), truth.astype(np.float32))
            spanning += len(np.unique(picked // 16)) > 1
        batches.on_epoch_end()
    assert spanning > 0
    validation = StoreBatches(cache, ds.catalogue, rows, std, batch_size=6)
    assert sum(len(validation[i][0]["spectrum"]) for i in range(len(validation))) == n_usable


SAME_TRAINING = """
import sys
import keras, numpy as np, pandas as pd
from mtopnet_core.model import ModelConfig
from mtopnet_core.training import TrainConfig, train
data, out = sys.argv[1:]
small, config = ModelConfig(filters=(4, 8, 8, 8)), TrainConfig(seed=5, batch_size=4, max_epochs=2)
runs = {"plain": {}, "threads": {"loader_threads": 3}, "grouped": {"loader_threads": 3, "steps_per_execution": 3}}
weights, losses = {}, {}
for name, options in runs.items():
    path = train(data, f"{out}/{name}", config, small, verbose=0, **options)
    weights[name] = [keras.ops.convert_to_numpy(w) for w in keras.saving.load_model(path).weights]
    losses[name] = pd.read_csv(f"{out}/{name}/history.csv")["val_loss"].to_numpy()
for name in ("threads", "grouped"):
    for a, b in zip(weights["plain"], weights[name], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses["plain"], losses[name], rtol=1e-5)
print("same training", keras.backend.backend())
"""


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_loader_threads_and_steps_per_execution_leave_the_training_as_it_was(small_survey, tmp_path, backend):
    # 7 batches of 4 an epoch: executions of 3, 3 and 1 steps, and precise BN must still run after the
    # last; batches made ahead in threads must come in the planned order (Keras' own workers did not, under JAX)
    import os
    import subprocess
    import sys
    from pathlib import Path

    if backend == "jax":
        pytest.importorskip("jax")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", SAME_TRAINING, str(small_survey), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and f"same training {backend}" in done.stdout, done.stderr[-3000:]


@pytest.mark.slow
def test_a_run_stopped_by_its_deadline_is_not_finished_and_goes_on_when_resumed(small_survey, tmp_path):
    import time

    small, config = ModelConfig(filters=(4, 8, 8, 8)), TrainConfig(seed=2, batch_size=8, max_epochs=3)
    train(small_survey, tmp_path / "run", config, small, verbose=0, deadline=time.time())
    assert json.loads((tmp_path / "run" / "model.json").read_text())["history"]["epochs"] == 1
    exported = json.loads((export_run(tmp_path / "run", tmp_path / "taken") / "model.json").read_text())
    assert exported["history"]["epochs"] == 1 and not exported["history"]["finished"]
    train(small_survey, tmp_path / "run", config, small, verbose=0)
    ended = json.loads((export_run(tmp_path / "run", tmp_path / "ended") / "model.json").read_text())
    assert ended["history"]["epochs"] == 3 and ended["history"]["finished"]


@pytest.mark.slow
def test_short_training_run_writes_everything_and_resumes(small_survey, tmp_path):
    small = ModelConfig(filters=(4, 8, 8, 8))
    out = tmp_path / "run"
    train(small_survey, out, TrainConfig(max_epochs=1, batch_size=8), small, verbose=0)
    meta = json.loads((out / "model.json").read_text())
    assert meta["grid_fingerprint"] == grid.grid_fingerprint()
    assert meta["data"]["n_train"] == 28 and meta["history"]["epochs"] == 1
    assert set(meta["standardiser"]) >= {"continuum_mean", "log_mstar_mean"}
    for name in ("model.keras", "best.keras", "last.keras", "split.npz", "history.csv"):
        assert (out / name).is_file()
    train(small_survey, out, TrainConfig(max_epochs=2, batch_size=8), small, verbose=0)
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1] and np.isfinite(history["val_loss"]).all()
    assert history["learning_rate"].iloc[1] < history["learning_rate"].iloc[0]
    with pytest.raises(ValueError, match="other settings"):
        train(small_survey, out, TrainConfig(max_epochs=2, batch_size=16), small, verbose=0)
    # a finished run exports as finished; one taken while it trains (no model.keras yet) says so
    assert json.loads((export_run(out, tmp_path / "done") / "model.json").read_text())["history"]["finished"]
    (out / "model.keras").unlink()
    # ... and a run begun before the continuum ceiling was recorded gets it from its inputs
    meta = json.loads((out / "model.json").read_text())
    ceiling = meta["domain"].pop("continuum_max")
    (out / "model.json").write_text(json.dumps(meta))
    taken = json.loads((export_run(out, tmp_path / "taken") / "model.json").read_text())
    assert taken["domain"]["continuum_max"] == ceiling and len(ceiling) == 10
    taken = taken["history"]
    assert not taken["finished"] and taken["checkpoint"] == "best.keras" and taken["epochs"] == 2


@pytest.mark.slow
def test_a_resumed_run_keeps_its_best_checkpoint_and_its_early_stopping_count(small_survey, tmp_path):
    small, config = ModelConfig(filters=(4, 8, 8, 8)), dict(batch_size=8, patience=1)
    out = tmp_path / "run"
    train(small_survey, out, TrainConfig(max_epochs=1, **config), small, verbose=0)
    # the first epoch's record made unbeatable: no later epoch may replace its checkpoint, and
    # with patience 1 the run must stop after one more epoch without improvement
    history = pd.read_csv(out / "history.csv")
    history.loc[0, "val_loss"] = 1e-9
    history.to_csv(out / "history.csv", index=False)
    best = (out / "best.keras").read_bytes()
    train(small_survey, out, TrainConfig(max_epochs=5, **config), small, verbose=0)
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [0, 1]
    assert (out / "best.keras").read_bytes() == best


def test_warm_start_continues_a_trained_model(small_survey, tiny_model, tmp_path):
    import keras

    small = ModelConfig(filters=(4, 8, 8, 8))
    source = json.loads((tiny_model / "model.json").read_text())
    # one epoch at learning rate 0: the trained weights are the source's (the batch normalisation's
    # statistics are recomputed, so only the trainable weights are compared)
    out = tmp_path / "frozen"
    train(small_survey, out, TrainConfig(max_epochs=2, batch_size=8, lr_start=0.0, lr_end=0.0), small, verbose=0,
          warm_start=tiny_model)
    start, continued = (keras.saving.load_model(path / "model.keras") for path in (tiny_model, out))
    for a, b in zip(start.trainable_weights, continued.trainable_weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    meta = json.loads((out / "model.json").read_text())
    assert meta["standardiser"] == source["standardiser"] and meta["warm_start"]["epochs"] == 1
    # the schedule goes on from the source's next epoch
    out = tmp_path / "more"
    train(small_survey, out, TrainConfig(max_epochs=2, batch_size=8), small, verbose=0, warm_start=tiny_model)
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1]
    assert history["learning_rate"].iloc[0] == pytest.approx(learning_rate(1, TrainConfig()))
    assert json.loads((out / "model.json").read_text())["history"]["epochs"] == 2  # the schedule's, not the log's
    # no epoch left to run, another split (seed) or another network: refused
    with pytest.raises(ValueError, match="ask for more"):
        train(small_survey, tmp_path / "none", TrainConfig(max_epochs=1, batch_size=8), small, verbose=0,
              warm_start=tiny_model)
    with pytest.raises(ValueError, match="split seed"):
        train(small_survey, tmp_path / "other", TrainConfig(max_epochs=2, batch_size=8, seed=3), small, verbose=0,
              warm_start=tiny_model)
    with pytest.raises(ValueError, match="network"):
        train(small_survey, tmp_path / "wider", TrainConfig(max_epochs=2, batch_size=8),
              ModelConfig(filters=(8, 8, 8, 8)), verbose=0, warm_start=tiny_model)


def test_warm_start_on_another_draw_of_the_survey(small_survey, tiny_model, tmp_path):
    # another seed: none of the source's training galaxies can be in this run's validation rows
    other = tmp_path / "s8"
    simulate_survey(other, 24, 8, SMALL, workers=1)
    small = ModelConfig(filters=(4, 8, 8, 8))
    out = tmp_path / "more"
    train(other, out, TrainConfig(max_epochs=2, batch_size=8, seed=5), small, verbose=0, warm_start=tiny_model)
    meta = json.loads((out / "model.json").read_text())
    assert meta["data"]["seed"] == 8 and meta["warm_start"]["data"]["seed"] == 7
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1]
    # the same seed at another size may share galaxies with the source's training rows: refused
    same_seed = tmp_path / "s7_small"
    simulate_survey(same_seed, 24, 7, SMALL, workers=1)
    with pytest.raises(ValueError, match="same seed, other size"):
        train(same_seed, tmp_path / "refused", TrainConfig(max_epochs=2, batch_size=8), small, verbose=0,
              warm_start=tiny_model)


def test_warm_start_into_another_line_head_keeps_every_other_layer(small_survey, tiny_model, tmp_path):
    import keras

    # the tiny model has the comb head; continue it with the paper's MLP head at learning rate 0
    paper = ModelConfig(filters=(4, 8, 8, 8), line_head="paper")
    out = tmp_path / "paper_head"
    train(small_survey, out, TrainConfig(max_epochs=2, batch_size=8, lr_start=0.0, lr_end=0.0), paper, verbose=0,
          warm_start=tiny_model)
    start, continued = (keras.saving.load_model(path / "model.keras") for path in (tiny_model, out))
    shared = [layer.name for layer in continued.layers if layer.trainable_weights
              and layer.name in {other.name for other in start.layers if other.trainable_weights}]
    # every layer but the paper head's output (the comb's is a projection without weights)
    assert len(shared) == len([layer for layer in continued.layers if layer.trainable_weights]) - 1
    for name in shared:
        for a, b in zip(start.get_layer(name).trainable_weights, continued.get_layer(name).trainable_weights,
                        strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert continued.get_layer("line_location").output.shape[-1] == grid.N_CHANNELS


def test_batch_norm_statistics_are_exact_for_the_saved_weights(small_survey, tiny_model):
    import keras

    from mtopnet_core.preprocessing import Standardiser
    from mtopnet_core.training import PreciseBatchNorm

    ds = open_dataset(small_survey)
    meta = json.loads((tiny_model / "model.json").read_text())
    model = keras.saving.load_model(tiny_model / "model.keras")
    cache = cache_inputs(ds, tiny_model / "inputs.zarr", PreprocessingConfig(), progress=False)
    split = dict(np.load(tiny_model / "split.npz"))
    batches = StoreBatches(cache, ds.catalogue, split["train"], Standardiser.from_dict(meta["standardiser"]), 8)
    inputs = PreciseBatchNorm(batches).inputs
    layer = model.get_layer("shared_info")
    values = keras.Model(model.inputs, layer.input).predict(inputs, verbose=0)
    assert np.allclose(layer.moving_mean.numpy(), values.mean(axis=0), atol=1e-5)
    assert np.allclose(layer.moving_variance.numpy(), values.var(axis=0), rtol=1e-4, atol=1e-6)


def test_training_stops_before_an_epoch_that_would_pass_the_deadline():
    import time
    from types import SimpleNamespace

    from mtopnet_core.training import StopBeforeDeadline

    model = SimpleNamespace(stop_training=False)
    generous = StopBeforeDeadline(time.time() + 3600)
    generous.set_model(model)
    generous.on_epoch_begin(0)
    generous.on_epoch_end(0)
    assert not model.stop_training
    tight = StopBeforeDeadline(time.time() + 0.05)
    tight.set_model(model)
    tight.on_epoch_begin(0)
    time.sleep(0.1)  # an epoch of 0.1 s, and less than that left
    tight.on_epoch_end(0)
    assert model.stop_training
