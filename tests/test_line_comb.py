"""The comb line head: its projection is the labels, its evidence reads the lines' channels."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mtopnet_core import grid, line_comb
from mtopnet_core.labels import LINE_HALF_WIDTH, line_channels, line_location_labels


def test_prediction_threads_that_ask_at_once_build_the_projection_once(monkeypatch):
    built, mask = [], line_comb._mask_matrix()

    def slow_mask():
        built.append(1)
        time.sleep(0.2)
        return mask

    line_comb._built_projection_matrix.cache_clear()
    monkeypatch.setattr(line_comb, "_mask_matrix", slow_mask)
    with ThreadPoolExecutor(4) as pool:
        matrices = list(pool.map(lambda _: line_comb._projection_matrix(), range(4)))
    assert len(built) == 1 and all(matrix is matrices[0] for matrix in matrices)
    assert (matrices[0] != mask.T).nnz == 0


def test_a_sure_fine_redshift_projects_to_its_line_labels():
    bins = np.array([0, 1, 7, 1234, 2500, 3998, 3999])
    fine = np.zeros((bins.size, line_comb.N_FINE_BINS), np.float32)
    fine[np.arange(bins.size), bins] = 1.0
    labels = line_location_labels(line_comb.fine_redshift_centres()[bins])
    np.testing.assert_array_equal(line_comb.project(fine), labels)
    # half the mass on each of two far-apart redshifts: half on each one's lines, one where they share
    mixed = line_comb.project((fine[2:3] + fine[4:5]) / 2)[0]
    np.testing.assert_allclose(mixed, (labels[2] + labels[4]).clip(max=2) / 2, atol=1e-6)


def test_fine_bins_split_the_redshift_bins_and_move_lines_less_than_the_label_half_width():
    centres = line_comb.fine_redshift_centres()
    assert grid.redshift_to_bin(centres).tolist() == np.repeat(np.arange(grid.N_Z_BINS),
                                                               line_comb.FINE_BINS_PER_Z_BIN).tolist()
    channels = line_channels(centres)
    both = (channels[1:] >= 0) & (channels[:-1] >= 0)
    # a line moves at most 7 channels from one fine bin to the next ([S III] 9532 in H at z ~ 0.7),
    # so any redshift puts it within 4 channels of where its nearest fine bin does: inside the label
    assert np.abs(np.diff(channels, axis=0)[both]).max() / 2 < LINE_HALF_WIDTH


def test_each_channel_has_disjoint_sorted_intervals():
    channel, lower, upper = line_comb.mask_intervals()
    assert np.all(np.diff(channel) >= 0) and np.all(upper > lower)
    same = channel[1:] == channel[:-1]
    assert np.all(lower[1:][same] > upper[:-1][same])  # merged where they would touch
    assert np.unique(channel).size == grid.N_CHANNELS


def test_the_fine_distribution_is_the_prior_refined_by_the_evidence():
    rng = np.random.default_rng(3)
    prior = rng.normal(size=(2, grid.N_Z_BINS))
    flat = line_comb.fine_distribution(prior, np.zeros((2, line_comb.N_FINE_BINS)))
    np.testing.assert_allclose(flat.reshape(2, grid.N_Z_BINS, -1).sum(axis=2),
                               np.exp(prior) / np.exp(prior).sum(axis=1, keepdims=True), rtol=1e-5)
    evidence = np.zeros((2, line_comb.N_FINE_BINS))
    evidence[:, 1003] = 40.0
    assert (line_comb.fine_distribution(prior, evidence).argmax(axis=1) == 1003).all()


keras = pytest.importorskip("keras")


def test_the_keras_layers_compute_what_numpy_does():
    from mtopnet_core.model import LineComb, LineEvidence

    rng = np.random.default_rng(4)
    prior = rng.normal(size=(3, grid.N_Z_BINS)).astype("float32")
    evidence = (3 * rng.normal(size=(3, line_comb.N_FINE_BINS))).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(LineComb()([prior, evidence])),
                               line_comb.project(line_comb.fine_distribution(prior, evidence)), atol=2e-6)

    # one spike in one map: the evidence of every fine bin that puts a line on that channel is
    # that line's weight, and zero elsewhere
    layer = LineEvidence()
    layer.build((None, grid.N_CHANNELS, 2))
    weights = rng.normal(size=layer.line_weights.shape).astype("float32")
    layer.line_weights.assign(weights)
    maps = np.zeros((1, grid.N_CHANNELS, 2), "float32")
    maps[0, 5000, 1] = 1.0
    got = keras.ops.convert_to_numpy(layer(maps))[0]
    bins, lines = np.nonzero(line_comb.fine_line_channels() == 5000)
    expected = np.zeros(line_comb.N_FINE_BINS, "float32")
    np.add.at(expected, bins, weights[lines, 1])
    assert bins.size > 0
    np.testing.assert_allclose(got, expected, atol=1e-6)

    # the layer in NumPy (the exported network's), on maps of noise, maps first, in blocks of rows
    maps = rng.normal(size=(2 * line_comb.EVIDENCE_ROWS + 3, grid.N_CHANNELS, 2)).astype("float32")
    matrix = line_comb.evidence_matrix(weights)
    np.testing.assert_allclose(line_comb.evidence(maps.transpose(0, 2, 1), matrix),
                               keras.ops.convert_to_numpy(layer(maps)), atol=2e-5)


def _value_and_gradients(function, *inputs):
    """The function's value and its gradients in each input, with the backend's own differentiation."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = function(*inputs)
        return float(value), [np.asarray(tf.convert_to_tensor(g)) for g in tape.gradient(value, inputs)]
    if backend == "jax":
        import jax

        value, gradients = jax.value_and_grad(function, argnums=tuple(range(len(inputs))))(*inputs)
        return float(value), [np.asarray(g) for g in gradients]
    pytest.skip(f"no gradient helper for the {backend} backend")


def test_the_keras_layers_gradients_are_the_transposed_products():
    # the layers carry their own gradients (sorted segment sums, for speed): check them against
    # the transposed products written out in NumPy, for random maps, weights and upstream gradients
    from mtopnet_core.model import LineComb, LineEvidence

    rng = np.random.default_rng(5)
    maps = rng.normal(size=(2, grid.N_CHANNELS, 2)).astype("float32")
    weights = rng.normal(size=(line_comb.fine_line_channels().shape[1], 2)).astype("float32")
    upstream = rng.normal(size=(2, line_comb.N_FINE_BINS)).astype("float32")
    layer = LineEvidence()
    layer.build(maps.shape)

    def weighted_evidence(maps, weights):
        evidence, _ = layer.stateless_call([weights], [], maps)
        return keras.ops.sum(evidence * upstream)

    _, (d_maps, d_weights) = _value_and_gradients(weighted_evidence, maps, weights)
    flat = (line_comb.evidence_matrix(weights) @ upstream.T).T  # (2, 2 * 12217), maps first
    np.testing.assert_allclose(d_maps, flat.reshape(2, 2, grid.N_CHANNELS).transpose(0, 2, 1), atol=1e-4)
    channels = line_comb.fine_line_channels()
    fine_bin, line = np.nonzero(channels < grid.N_CHANNELS)
    expected = np.zeros_like(weights)
    np.add.at(expected, line, np.einsum("ne,nem->em", upstream[:, fine_bin], maps[:, channels[fine_bin, line], :]))
    np.testing.assert_allclose(d_weights, expected, rtol=1e-4, atol=1e-3)

    prior = rng.normal(size=(2, grid.N_Z_BINS)).astype("float32")
    evidence = (2 * rng.normal(size=(2, line_comb.N_FINE_BINS))).astype("float32")
    upstream = rng.normal(size=(2, grid.N_CHANNELS)).astype("float32")
    _, (d_prior, d_evidence) = _value_and_gradients(
        lambda p, e: keras.ops.sum(LineComb()([p, e]) * upstream), prior, evidence)
    fine = line_comb.fine_distribution(prior, evidence)
    assert line_comb.project(fine).max() < 1.0  # the clip is inactive: the projection is linear
    d_fine = (line_comb._mask_matrix().T @ upstream.T).T
    d_logits = fine * (d_fine - (d_fine * fine).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(d_evidence, d_logits, atol=1e-5)
    np.testing.assert_allclose(d_prior, d_logits.reshape(2, grid.N_Z_BINS, -1).sum(axis=2), atol=1e-5)
