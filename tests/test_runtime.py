"""The exported network (ONNX Runtime): the same outputs as Keras, checked on load, no TensorFlow."""

import json
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

from isolation import modules_imported_by  # noqa: E402

from mtopnet_core.assets import shipped_model_dir  # noqa: E402
from mtopnet_core.export import (  # noqa: E402
    ONNX_FILE,
    export_onnx,
    keep_batch_axis_named,
    keep_height_axis,
    unfold_narrow_convolutions,
)
from mtopnet_core.inference import ModelError, load_trained_model, predict  # noqa: E402
from mtopnet_core.mc_dropout import HEAD_INPUTS, HEADS_FILE  # noqa: E402
from mtopnet_core.runtime import OUTPUT_NAMES  # noqa: E402
from mtopnet_core.spectra import Spectra
from mtopnet_core.store import open_dataset  # noqa: E402
from mtopnet_core.tasks import SCALAR_TASKS, TASK_NAMES  # noqa: E402

TOLERANCE = 1e-4  # issue 11: every head within 1e-4 of Keras


@pytest.fixture(scope="module")
def exported_tiny(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported") / "tiny"
    shutil.copytree(tiny_model, folder)
    record = export_onnx(folder)
    return folder, record


@pytest.fixture(scope="module")
def spectra(small_survey):
    ds = open_dataset(small_survey)
    return ds, ds.read(slice(0, 24))


def _network_inputs(trained, ds, data):
    from mtopnet_core.preprocessing import preprocess

    pre = preprocess(Spectra(data["flux"], ds.sky, data["error"], data["mask"]), trained.preprocessing)
    return {"spectrum": pre.lines[..., None], "continuum": trained.standardiser.continuum(pre.continuum)}


def _assert_same_network(folder, ds, data):
    onnx_model = load_trained_model(folder)
    keras_model = load_trained_model(folder, runtime="keras")
    assert (onnx_model.runtime, keras_model.runtime) == ("onnxruntime", "keras")
    x = _network_inputs(onnx_model, ds, data)
    # real spectra, and the same spectra with noise: outputs that depend on the input
    noisy = {**x, "spectrum": x["spectrum"] + np.random.default_rng(3).normal(0, 0.05, x["spectrum"].shape)}
    for inputs in (x, noisy):
        ours, theirs = onnx_model.network(inputs), keras_model.network(inputs)
        assert set(ours) == set(theirs) == set(OUTPUT_NAMES)
        for name in OUTPUT_NAMES:
            assert ours[name].shape == theirs[name].shape
            np.testing.assert_allclose(ours[name], theirs[name], atol=TOLERANCE, rtol=0, err_msg=name)
            assert np.ptp(ours[name], axis=0).max() > 0, f"{name} is the same for every spectrum"


def test_the_export_adds_its_records_to_model_json_and_leaves_the_rest_as_it_was(exported_tiny, tiny_model):
    """A re-export of a shipped model changes only its records' lines, not the order of the file."""
    before = json.loads((tiny_model / "model.json").read_text())
    after = json.loads((exported_tiny[0] / "model.json").read_text())
    assert list(after)[:len(before)] == list(before) and {k: after[k] for k in before} == before
    assert list(after)[len(before):] == ["onnx", "mc_heads"] and after["onnx"] == exported_tiny[1]


def test_the_export_equals_keras_on_every_head(exported_tiny, spectra):
    folder, record = exported_tiny
    assert (folder / ONNX_FILE).is_file() and json.loads((folder / "model.json").read_text())["onnx"] == record
    # the comb head's evidence and projection are left out of the graph and done in NumPy from
    # the prior logits and the evidence maps
    assert {"line_location", "trunk_line_evidence"}.isdisjoint(record["outputs"])
    assert {"line_location_prior", "trunk_line_evidence_maps"} <= set(record["outputs"])
    _assert_same_network(folder, *spectra)


def test_the_shipped_export_equals_its_keras_model(spectra):
    _assert_same_network(shipped_model_dir(), *spectra)


@pytest.mark.parametrize("batch, run", [(10, 4), (32, 8)])
def test_the_export_in_batches_and_runs_of_any_size_equals_keras(exported_tiny, spectra, monkeypatch, batch, run):
    """21 spectra in batches of 10 (the NumPy steps) and ONNX Runtime calls of 4: partial runs and
    batches come back whole and in order."""
    from mtopnet_core import runtime

    monkeypatch.setattr(runtime, "ONNX_BATCH", batch)
    monkeypatch.setattr(runtime, "ONNX_RUN", run)
    ds, data = spectra
    _assert_same_network(exported_tiny[0], ds, {k: v[:21] for k, v in data.items()})


def test_predictions_through_either_runtime_agree(exported_tiny, spectra):
    folder, _ = exported_tiny
    ds, data = spectra
    spectra = Spectra(data["flux"], ds.sky, data["error"], data["mask"])
    ours = predict(load_trained_model(folder), spectra)
    theirs = predict(load_trained_model(folder, runtime="keras"), spectra)
    np.testing.assert_allclose(ours.redshift_pdf, theirs.redshift_pdf, atol=TOLERANCE)
    np.testing.assert_allclose(ours.quantities["log_mstar"], theirs.quantities["log_mstar"], atol=TOLERANCE)
    assert ours.flags == theirs.flags


def test_the_shipped_export_keeps_the_trunk_four_dimensional():
    import onnx

    graph = onnx.load(shipped_model_dir() / ONNX_FILE)
    ops = [node.op_type for node in graph.graph.node]
    # tf2onnx writes Unsqueeze, Conv, Squeeze per Conv1D (and two Transposes where a tensor feeds two
    # of them); kept: the input's Unsqueeze and a Squeeze where the trunk leaves for a 3-D reader,
    # the flatten and the comb head's evidence maps; no Transpose between trunk layers
    assert ops.count("Conv") == 15  # 13 layers, the evidence maps' one unfolded into three
    height = [node.name for node in graph.graph.node if node.op_type in ("Squeeze", "Unsqueeze")
              and node.name.startswith("mtopnet_with_embedding_1/block")
              or node.name.endswith("__squeeze")]
    assert len(height) == 3 and sum(name.endswith("__squeeze") for name in height) == 2
    unsqueezes = [node for node in graph.graph.node if node.op_type == "Unsqueeze"]
    assert len(unsqueezes) == 1 and unsqueezes[0].input[0] == "spectrum"
    # the evidence maps leave the trunk as ONNX Runtime computes them, maps first: no Transpose
    producer = {name: node for node in graph.graph.node for name in node.output}
    assert producer["trunk_line_evidence_maps"].op_type == "Squeeze"
    # (the one at the input, of the unsqueezed spectrum, only moves axes of length one: keep_batch_axis_named)
    assert not [node for node in graph.graph.node if node.op_type == "Transpose" and "/block" in node.name
                and "block4_pool" not in node.name and node.input[0] != unsqueezes[0].output[0]]
    assert len(keep_height_axis(graph).graph.node) == len(ops)  # a second pass finds nothing to do


def test_the_export_keeps_the_batch_axis_named_into_the_trunk(exported_tiny):
    """tf2onnx's Reshape of the spectrum to (-1, 1, 1, W) gave the trunk's batch axis a nameless length."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(exported_tiny[0] / ONNX_FILE)).graph
    shapes = {info.name: info.type.tensor_type.shape.dim for info in [*graph.value_info, *graph.input]}
    batch = shapes["spectrum"][0].dim_param
    first_conv = next(node for node in graph.node if node.op_type == "Conv")
    assert batch and shapes[first_conv.input[0]][0].dim_param == batch
    assert [node.op_type for node in graph.node].count("Reshape") == 1  # the flatten, to (-1, features)
    assert len(keep_batch_axis_named(onnx.load(exported_tiny[0] / ONNX_FILE)).graph.node) == len(graph.node)


def test_only_reshapes_that_move_axes_of_length_one_become_transposes():
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def reshape(source, shape, output):
        constant = numpy_helper.from_array(np.array(shape, np.int64), f"{output}_shape")
        return helper.make_node("Reshape", [source, constant.name], [output]), constant

    cases = [reshape("x", [-1, 1, 1, 5], "y1"), reshape("x", [0, 5, 1, 1], "y2"), reshape("z", [-1, 3, 4], "y3")]
    graph = helper.make_graph([node for node, _ in cases], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 5, 1]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 4, 3])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in
                               (("y1", ["n", 1, 1, 5]), ("y2", ["n", 5, 1, 1]), ("y3", ["n", 3, 4]))],
                              [constant for _, constant in cases])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = keep_batch_axis_named(model)
    assert [node.op_type for node in rewritten.graph.node] == ["Transpose", "Transpose", "Reshape"]
    feeds = {"x": np.random.default_rng(1).normal(size=(3, 1, 5, 1)).astype(np.float32),
             "z": np.arange(36, dtype=np.float32).reshape(3, 4, 3)}
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    after = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)


def test_onnx_runtime_fuses_each_residual_sum_of_the_shipped_export(tmp_path):
    """Block 1's residual Add and ReLU ran as two passes over the network's largest tensor (11% of its
    time) while ONNX Runtime could not prove the two summands to be of one shape."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(shipped_model_dir() / ONNX_FILE), options, providers=["CPUExecutionProvider"])
    blocked = [node for node in onnx.load(tmp_path / "optimised.onnx").graph.node
               if node.op_type == "Conv" and node.domain == "com.microsoft.nchwc"]
    if not blocked:
        pytest.skip("ONNX Runtime uses no blocked (NCHWc) convolutions on this CPU")
    # the sum is the fourth input of the block's second convolution, its ReLU the activation
    assert sum(len(node.input) == 4 for node in blocked) == 4


def test_a_narrow_convolution_is_unfolded_into_three_that_give_the_same_output():
    """ONNX Runtime padded the evidence maps' 2 output channels to a block of 8 or 16 (19% of the
    network's time on one AVX2 core); written as spread, shift and sum they fill their blocks."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    narrow = numpy_helper.from_array(rng.normal(size=(2, 3, 1, 5)).astype(np.float32), "narrow")
    bias = numpy_helper.from_array(rng.normal(size=2).astype(np.float32), "bias")
    wide = numpy_helper.from_array(rng.normal(size=(8, 3, 1, 5)).astype(np.float32), "wide")
    nodes = [helper.make_node("Conv", ["x", "narrow", "bias"], ["y"], kernel_shape=[1, 5], pads=[0, 1, 0, 3]),
             helper.make_node("Conv", ["x", "wide"], ["z"], kernel_shape=[1, 5], pads=[0, 2, 0, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 1, 40])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 1, 40]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 8, 1, 40])],
                              [narrow, bias, wide])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = unfold_narrow_convolutions(model)
    convs = [node for node in rewritten.graph.node if node.op_type == "Conv"]
    assert len(convs) == 4 and [node.output[0] for node in convs].count("y") == 1
    assert len(unfold_narrow_convolutions(rewritten).graph.node) == 4  # nothing narrow is left
    feeds = {"x": rng.normal(size=(3, 3, 1, 40)).astype(np.float32)}
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    after = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.ptp(before[0]) > 1
    for old, new in zip(before, after, strict=True):
        np.testing.assert_allclose(new, old, atol=1e-5, rtol=0)


def test_the_shipped_export_has_no_convolution_narrower_than_a_layout_block():
    import onnx

    graph = onnx.load(shipped_model_dir() / ONNX_FILE).graph
    weights = {init.name: init.dims for init in graph.initializer}
    kernels = [weights[node.input[1]] for node in graph.node if node.op_type == "Conv"]
    assert kernels and not [dims for dims in kernels if dims[0] < 8 and dims[3] > 1]


def test_a_damaged_or_stale_export_is_refused(exported_tiny, tiny_model, small_survey, tmp_path):
    folder, _ = exported_tiny
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    content = bytearray((damaged / ONNX_FILE).read_bytes())
    content[len(content) // 2] ^= 0xFF
    (damaged / ONNX_FILE).write_bytes(bytes(content))
    with pytest.raises(ModelError, match="model.onnx: damaged"):
        load_trained_model(damaged)

    stale = tmp_path / "stale"
    shutil.copytree(folder, stale)
    from mtopnet_core.model import ModelConfig
    from mtopnet_core.training import TrainConfig, train

    retrained = tmp_path / "retrained"
    train(small_survey, retrained, TrainConfig(max_epochs=1, batch_size=8, seed=5), ModelConfig(filters=(4, 8, 8, 8)),
          verbose=0)
    shutil.copy2(retrained / "model.keras", stale / "model.keras")
    with pytest.raises(ModelError, match="exported from another model.keras"):
        load_trained_model(stale)
    assert load_trained_model(stale, runtime="keras").runtime == "keras"  # Keras alone still works

    with pytest.raises(ModelError, match="no exported network"):
        load_trained_model(tiny_model, runtime="onnx")


def test_predicting_with_the_export_never_imports_tensorflow(exported_tiny, small_survey):
    folder, _ = exported_tiny
    code = ("from mtopnet_core.batch import predict_rows; "
            f"out = predict_rows({str(folder)!r}, {str(small_survey)!r}, 0, 8); "
            "assert out.redshift_pdf.shape == (8, 800); "
            f"mc = predict_rows({str(folder)!r}, {str(small_survey)!r}, 0, 8, mc_passes=4); "
            "assert (mc.redshift_pdf_spread > 0).any()")
    assert modules_imported_by(code) == []


def test_prediction_threads_give_the_one_thread_results(exported_tiny, small_survey, tmp_path):
    """The first chunk split over the threads, then one chunk per thread: every row lands once, right."""
    from mtopnet_core.batch import predict_store
    from mtopnet_core.results import open_results

    folder, _ = exported_tiny
    one = open_results(predict_store(small_survey, tmp_path / "one", folder, workers=1, progress=False))
    two = open_results(predict_store(small_survey, tmp_path / "two", folder, workers=2, progress=False))
    assert one.catalogue["object_id"].tolist() == two.catalogue["object_id"].tolist()
    np.testing.assert_allclose(two.redshift_pdf(), one.redshift_pdf(), atol=1e-6)
    np.testing.assert_allclose(two.embedding(), one.embedding(), atol=1e-5)
    np.testing.assert_array_equal(two.catalogue["z_peak"], one.catalogue["z_peak"])


def _writing_threads(monkeypatch) -> dict[int, str]:
    """Which thread writes each block of results (by its first row): "MainThread" or "mtopnet-predict"."""
    from mtopnet_core import batch

    writers, write_prediction_arrays = {}, batch.write_prediction_arrays
    monkeypatch.setattr(batch, "write_prediction_arrays", lambda results, start, predictions: (
        writers.setdefault(start, threading.current_thread().name.split("_")[0]),
        write_prediction_arrays(results, start, predictions))[1])
    return writers


def test_the_first_and_last_chunks_are_split_over_the_threads(exported_tiny, small_survey, tmp_path, monkeypatch):
    """On two threads the first chunk and the last two come in halves, joined and written by the
    calling thread; the chunks between are predicted and written whole by a thread; the results
    are one thread's."""
    from mtopnet_core import batch
    from mtopnet_core.results import open_results

    folder, _ = exported_tiny
    one = open_results(batch.predict_store(small_survey, tmp_path / "one", folder, workers=1, progress=False))
    monkeypatch.setitem(batch._cached_dataset(str(small_survey.resolve())).metadata, "chunk_size", 8)
    writers, rows = _writing_threads(monkeypatch), []
    predict_rows = batch.predict_rows
    monkeypatch.setattr(batch, "predict_rows", lambda model, data, start, stop, *args, **kwargs: (
        rows.append((start, stop)), predict_rows(model, data, start, stop, *args, **kwargs))[1])
    two = open_results(batch.predict_store(small_survey, tmp_path / "two", folder, workers=2, progress=False))
    assert writers == {0: "MainThread", 8: "mtopnet-predict", 16: "mtopnet-predict", 24: "MainThread",
                       32: "MainThread"}
    assert sorted(rows) == [(0, 4), (4, 8), (8, 16), (16, 24), (24, 28), (28, 32), (32, 36), (36, 40)]
    assert two.catalogue["object_id"].tolist() == one.catalogue["object_id"].tolist()
    np.testing.assert_allclose(two.redshift_pdf(), one.redshift_pdf(), atol=1e-6)
    np.testing.assert_allclose(two.embedding(), one.embedding(), atol=1e-5)
    assert np.abs(two.line_probability() - one.line_probability()).max() <= 1 / 255 + 1e-6
    np.testing.assert_array_equal(two.catalogue["z_peak"], one.catalogue["z_peak"])


def test_a_first_chunk_of_one_spectrum_is_predicted_by_the_threads(exported_tiny, tmp_path):
    from mtopnet_core.batch import predict_store
    from mtopnet_core.results import open_results
    from mtopnet_core.simulate.settings import SimulationSettings
    from mtopnet_core.simulate.survey import simulate_survey

    folder, _ = exported_tiny
    survey = tmp_path / "survey"
    simulate_survey(survey, 3, 5, SimulationSettings(chunk_size=1), workers=1, progress=False)
    one = open_results(predict_store(survey, tmp_path / "one", folder, workers=1, progress=False))
    two = open_results(predict_store(survey, tmp_path / "two", folder, workers=2, progress=False))
    np.testing.assert_allclose(two.redshift_pdf(), one.redshift_pdf(), atol=1e-6)
    assert np.isfinite(two.redshift_pdf()).all()


@pytest.mark.parametrize("kind", ["keras", "mc_dropout"])
def test_prediction_threads_with_keras_or_mc_dropout_give_the_one_thread_results(kind, tiny_model, exported_tiny,
                                                                                  small_survey, tmp_path):
    """Keras (no export) shared by the threads; MC dropout's heads in NumPy on one core per thread."""
    from mtopnet_core.batch import predict_store
    from mtopnet_core.results import open_results

    folder, passes = (tiny_model, 0) if kind == "keras" else (exported_tiny[0], 3)
    one = open_results(predict_store(small_survey, tmp_path / "one", folder, mc_passes=passes, workers=1,
                                     progress=False))
    two = open_results(predict_store(small_survey, tmp_path / "two", folder, mc_passes=passes, workers=2,
                                     progress=False))
    assert one.catalogue["object_id"].tolist() == two.catalogue["object_id"].tolist()
    np.testing.assert_allclose(two.redshift_pdf(), one.redshift_pdf(), atol=1e-6)
    np.testing.assert_array_equal(two.catalogue["z_peak"], one.catalogue["z_peak"])
    if passes:
        assert (two.catalogue["log_mstar_spread"] > 0).all()
        np.testing.assert_allclose(two.catalogue["log_mstar_spread"], one.catalogue["log_mstar_spread"], atol=1e-6)


def test_the_heads_in_numpy_without_dropout_are_the_network(exported_tiny, spectra):
    folder, _ = exported_tiny
    trained = load_trained_model(folder)
    assert trained.mc_heads is not None
    ds, data = spectra
    once = trained.network(_network_inputs(trained, ds, data), outputs=[*OUTPUT_NAMES, *HEAD_INPUTS.values()])
    again = trained.mc_heads.run(once)  # no random generator: no dropout
    for name in TASK_NAMES:
        np.testing.assert_allclose(again[name], once[name], atol=TOLERANCE, rtol=0, err_msg=name)


def test_the_export_and_the_heads_keep_the_inference_bound(tiny_model, spectra, tmp_path):
    import keras

    from mtopnet_core.model import BoundedBatchNormalization

    folder = tmp_path / "narrow"
    shutil.copytree(tiny_model, folder)
    model = keras.saving.load_model(folder / "model.keras")
    norms = [layer for layer in model.layers if isinstance(layer, BoundedBatchNormalization)]
    assert {layer.name for layer in norms} == {"spectral_features_norm", "shared_info"}
    for layer in norms:  # every other feature's mean moved by twice the bound: beyond it for any spectrum
        mean, variance = np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)
        shift = 2 * layer.bound * np.sqrt(variance + layer.epsilon)
        layer.moving_mean.assign(mean - np.where(np.arange(mean.size) % 2 == 0, shift, 0.0))
    model.save(folder / "model.keras")
    export_onnx(folder)
    _assert_same_network(folder, *spectra)
    trained = load_trained_model(folder)
    ds, data = spectra
    once = trained.network(_network_inputs(trained, ds, data), outputs=[*OUTPUT_NAMES, *HEAD_INPUTS.values()])
    gamma, beta = (np.asarray(w) for w in model.get_layer("spectral_features_norm").get_weights()[:2])
    reach = norms[0].bound * np.abs(gamma)
    at_bound = np.isclose(np.abs(once[HEAD_INPUTS["features_norm"]] - beta), reach, rtol=1e-4)
    assert 0.4 < at_bound.mean() < 0.6  # the bound is reached, and the rest passes through
    again = trained.mc_heads.run(once)
    for name in TASK_NAMES:
        np.testing.assert_allclose(again[name], once[name], atol=TOLERANCE, rtol=0, err_msg=name)


def test_mc_dropout_in_numpy_draws_as_keras_does_and_repeats_for_a_seed(exported_tiny, small_survey, tmp_path):
    folder, _ = exported_tiny
    keras_only = tmp_path / "keras_mc"
    shutil.copytree(folder, keras_only)
    meta = json.loads((keras_only / "model.json").read_text())
    del meta["mc_heads"]  # a model folder without the heads: MC dropout runs the whole Keras network
    (keras_only / "model.json").write_text(json.dumps(meta))
    spectra = open_dataset(small_survey).spectra(slice(0, 24))
    # (the export alone cannot run without the heads: the comb's evidence weights are there)
    with pytest.raises(ModelError, match="needs the evidence weights of heads.npz"):
        load_trained_model(keras_only)
    fast, slow = load_trained_model(folder), load_trained_model(keras_only, runtime="keras")
    assert fast.mc_heads is not None and slow.mc_heads is None
    ours, theirs = predict(fast, spectra, mc_passes=200, mc_seed=1), predict(slow, spectra, mc_passes=200)
    for t in SCALAR_TASKS:
        # the same dropout (rate, scaling, where): the same spreads and means, up to sampling noise
        ratio = np.median(ours.quantity_spreads[t.name] / theirs.quantity_spreads[t.name])
        assert 0.8 < ratio < 1.25, (t.name, ratio)
        scatter = theirs.quantity_spreads[t.name] / np.sqrt(200)
        assert np.median(np.abs(ours.quantities[t.name] - theirs.quantities[t.name]) / scatter) < 2.5, t.name
    ratio = np.nanmedian(ours.redshift_pdf_spread / np.maximum(theirs.redshift_pdf_spread, 1e-12))
    assert 0.8 < ratio < 1.25
    repeat = predict(fast, spectra, mc_passes=5, mc_seed=1)
    np.testing.assert_array_equal(repeat.redshift_pdf, predict(fast, spectra, mc_passes=5, mc_seed=1).redshift_pdf)
    assert not np.array_equal(repeat.redshift_pdf, predict(fast, spectra, mc_passes=5, mc_seed=2).redshift_pdf)
    # damaged heads are refused, as a damaged export is
    content = bytearray((keras_only / HEADS_FILE).read_bytes())
    content[len(content) // 2] ^= 0xFF
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / HEADS_FILE).write_bytes(bytes(content))
    with pytest.raises(ModelError, match="heads.npz: damaged"):
        load_trained_model(damaged).mc_heads  # noqa: B018


@pytest.mark.multiprocess
@pytest.mark.parametrize("reading, workers", [("slow", 2), ("fast", 2), ("fast", 3)])
def test_fits_files_are_predicted_by_the_threads_and_slow_ones_read_by_processes(reading, workers, exported_tiny,
                                                                                small_survey, tmp_path, monkeypatch):
    """The first chunk is read here; the others by reader processes where that read was slow
    (astropy's layouts) or there are more than two workers, else by the prediction threads. Either
    way the threads predict them as a store's chunks (the first and last ``workers`` split and
    written here, a chunk between written whole by a thread), with the one-thread results."""
    from mtopnet_core import batch
    from mtopnet_core.fits_io import export_dataset_fits
    from mtopnet_core.results import open_results
    from mtopnet_core.store import open_dataset

    folder, _ = exported_tiny
    files = export_dataset_fits(small_survey, tmp_path / "in", first=8)
    sky = open_dataset(small_survey).sky
    monkeypatch.setattr(batch, "CHUNK_ROWS", 2)
    one = open_results(batch.predict_fits(files, tmp_path / "one", folder, sky, workers=1, progress=False))
    submitted, writers = [], _writing_threads(monkeypatch)

    class RecordingPool(batch.ProcessPoolExecutor):
        def submit(self, function, *args, **kwargs):
            submitted.append(args[0])
            return super().submit(function, *args, **kwargs)

    monkeypatch.setattr(batch, "SLOW_READ_SECONDS", 0.0 if reading == "slow" else np.inf)
    monkeypatch.setattr(batch, "ProcessPoolExecutor", RecordingPool)
    two = open_results(batch.predict_fits(files, tmp_path / "two", folder, sky, workers=workers, progress=False))
    assert sorted(submitted) == ([] if (reading, workers) == ("fast", 2) else [2, 4, 6])
    assert writers == {0: "MainThread", 2: "mtopnet-predict" if workers == 2 else "MainThread", 4: "MainThread",
                       6: "MainThread"}
    assert two.catalogue["file"].tolist() == one.catalogue["file"].tolist() == [str(f) for f in files]
    assert two.catalogue["object_id"].tolist() == one.catalogue["object_id"].tolist()
    np.testing.assert_allclose(two.redshift_pdf(), one.redshift_pdf(), atol=1e-6)
    np.testing.assert_allclose(two.embedding(), one.embedding(), atol=1e-5)
    np.testing.assert_array_equal(two.catalogue["z_peak"], one.catalogue["z_peak"])
