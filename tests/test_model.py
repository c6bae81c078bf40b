"""The M-TOPnet network: shapes, named layers, a training step that learns, save/load round trip."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from mtopnet_core.labels import task_labels  # noqa: E402
from mtopnet_core.model import EMBEDDING_LAYERS, BoundedBatchNormalization, ModelConfig, build_model, compile_model  # noqa: E402
from mtopnet_core.preprocessing import Standardiser, preprocess  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402
from mtopnet_core.tasks import TASKS, task  # noqa: E402


@pytest.fixture(scope="module")
def batch(small_survey):
    ds = open_dataset(small_survey)
    cat = ds.catalogue.iloc[:16]
    pre = preprocess(ds.spectra(slice(0, 16)))
    std = Standardiser.fit(pre.continuum, cat)
    x = {"spectrum": pre.lines[..., None], "continuum": std.continuum(pre.continuum)}
    return x, task_labels(cat, std)


def test_outputs_layers_and_size():
    model = build_model()
    out = model.predict({"spectrum": np.zeros((2, 12217, 1), "float32"),
                         "continuum": np.zeros((2, 10), "float32")}, verbose=0)
    assert {name: value.shape for name, value in out.items()} == {
        "line_location": (2, 12217), "redshift": (2, 800), "log_mstar": (2, 1), "log_sfr": (2, 1)}
    for name in (*EMBEDDING_LAYERS, "shared_info", "spectral_features", "block4_pool"):
        model.get_layer(name)
    assert model.get_layer("block4_pool").output.shape[1] == 19  # 12217 pooled by 5 four times
    # the paper's line head is 1.6 M of its 2.2 M parameters; the comb head's prior is 0.1 M
    assert 0.6e6 < model.count_params() < 0.75e6
    assert 2.0e6 < build_model(ModelConfig(line_head="paper")).count_params() < 2.4e6


def test_the_model_heads_and_losses_are_the_task_registry(batch):
    x, y = batch
    model = compile_model(build_model())
    assert list(model.output) == [t.name for t in TASKS] == list(y)
    for t in TASKS:
        assert model.get_layer(t.name).output.shape[-1] == t.output_size == y[t.name].shape[-1]
        assert [model.get_layer(f"{t.name}_dense_{i}").units for i in range(1, len(t.hidden_units) + 1)] == \
            list(t.hidden_units)
        assert type(model.loss[t.name]).__name__ == t.loss
    assert sum(task(name.removesuffix("_dense_1")).hidden_units[0] for name in EMBEDDING_LAYERS) == 192
    with pytest.raises(KeyError, match="the tasks are line_location"):
        task("age")


@pytest.mark.slow
def test_training_steps_lower_the_loss_on_real_spectra(batch):
    x, y = batch
    keras.utils.set_random_seed(1)
    model = compile_model(build_model(), learning_rate=0.001)
    first = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    for _ in range(5):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] < first
    probabilities = model.predict(x, verbose=0)["redshift"]
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_ablation_is_one_setting_away(batch):
    x, y = batch
    config = ModelConfig(loss_weights={"line_location": 0.0, "redshift": 1.0, "log_mstar": 0.0, "log_sfr": 0.0})
    model = compile_model(build_model(config), config)
    losses = model.evaluate(x, y, verbose=0, return_dict=True)
    assert losses["loss"] == pytest.approx(losses["redshift_loss"], rel=1e-4)


@pytest.mark.slow
def test_save_and_load_give_identical_predictions(batch, tmp_path):
    x, y = batch
    model = compile_model(build_model())
    model.train_on_batch(x, y)  # a trained model, optimizer state included, as training saves it
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for name in before:
        np.testing.assert_allclose(before[name], after[name], rtol=1e-5, atol=1e-6)


def test_inference_keeps_normalised_features_within_what_training_can_produce():
    bound = BoundedBatchNormalization.training_bound(64)
    assert bound == pytest.approx(np.sqrt(63))
    # a batch of 64 with one value apart normalises it to exactly that bound in training
    lone = np.zeros((64, 1), "float32")
    lone[0] = 5.0
    normalised = keras.layers.BatchNormalization(epsilon=0)(lone, training=True)
    assert float(normalised[0, 0]) == pytest.approx(bound, rel=1e-4)

    layer, plain = BoundedBatchNormalization(bound), keras.layers.BatchNormalization()
    for norm in (layer, plain):
        norm.build((None, 3))
        # feature 1 was zero on every training spectrum (variance 0): the case that exploded
        gamma, beta, mean, variance = [1.0, 2.0, -1.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]
        norm.set_weights([np.array(w) for w in (gamma, beta, mean, variance)])
    x = np.array([[0.5, 829.0, -0.3], [1.0, 0.0, 20.0]], "float32")
    ours, theirs = np.asarray(layer(x, training=False)), np.asarray(plain(x, training=False))
    assert theirs[0, 1] > 5e4  # plain: the lone firing normalises to ~26 000 and scales to twice that
    assert float(ours[0, 1]) == pytest.approx(1.0 + 2.0 * bound) and float(ours[1, 2]) == pytest.approx(0.5 - bound)
    inside = [(0, 0), (0, 2), (1, 0), (1, 1)]
    np.testing.assert_allclose([ours[i] for i in inside], [theirs[i] for i in inside], rtol=1e-6)
    # training uses the batch's statistics, unchanged; a frozen layer (MC dropout) keeps the bound
    batch = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    np.testing.assert_allclose(layer(batch, training=True), plain(batch, training=True), rtol=1e-6)
    layer.trainable = False
    assert float(np.asarray(layer(x, training=True))[0, 1]) == pytest.approx(1.0 + 2.0 * bound)
    # the bound follows the training batch size and is saved with the model
    model = build_model(batch_size=16)
    for name in ("spectral_features_norm", "shared_info"):
        assert model.get_layer(name).bound == pytest.approx(np.sqrt(15))
    assert keras.layers.deserialize(keras.layers.serialize(model.get_layer("shared_info"))).bound == model.get_layer(
        "shared_info").bound
