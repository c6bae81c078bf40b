"""The network at prediction time: ONNX Runtime on the exported graph, or Keras.

A model folder may hold ``model.onnx`` (:func:`mtopnet_core.export.export_onnx`), recorded in
``model.json["onnx"]`` with its checksum and the checksum of the ``model.keras`` it was exported
from. :func:`open_onnx_network` refuses a file whose bytes differ from the record, or an export
of another ``model.keras``, so a stale or damaged export is never used silently.

Why ONNX Runtime: measured side by side (BENCHMARKS.md), it runs the exported graph 1.1-1.3x
faster than TensorFlow on an AVX-512 CPU and ~1.7x on an AVX2-only one, and it imports in a
fraction of a second, where TensorFlow takes ~5 s: prediction workers that need no gradients
never import TensorFlow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mtopnet_core import line_comb
from mtopnet_core.errors import ModelError
from mtopnet_core.mc_dropout import HEAD_INPUTS, HEADS_FILE, LINE_TASK, McHeads
from mtopnet_core.tasks import TASK_NAMES

__all__ = ["Network", "OnnxNetwork", "KerasNetwork", "open_onnx_network", "OUTPUT_NAMES", "ONNX_BATCH", "ONNX_RUN",
           "COMB_OUTPUT", "COMB_PRIOR_OUTPUT", "COMB_EVIDENCE_OUTPUT", "COMB_MAPS_OUTPUT"]

logger = logging.getLogger(__name__)

OUTPUT_NAMES = (*TASK_NAMES, "embedding")
"""Outputs of the prediction network: one head per task (:mod:`mtopnet_core.tasks`) and the embedding."""
COMB_OUTPUT = LINE_TASK
"""The line-location head's output; with a comb head (:mod:`mtopnet_core.line_comb`) an export
leaves its evidence layer and projection out and gives the prior logits and the evidence maps
instead: :class:`OnnxNetwork` weighs the maps and projects in NumPy (sparse products: 0.03-0.05
and 0.10-0.13 ms per spectrum, against ~0.7 and 0.4 ms as ONNX Runtime's gathers)."""
COMB_PRIOR_OUTPUT = f"{COMB_OUTPUT}{line_comb.PRIOR_SUFFIX}"
"""The comb head's prior logits (its last dense layer, :func:`mtopnet_core.model.head_output_layer`)."""
COMB_EVIDENCE_OUTPUT = HEAD_INPUTS["line_evidence"]
"""The comb head's fine-bin evidence (MC dropout reads it too)."""
COMB_MAPS_OUTPUT = f"trunk_{line_comb.EVIDENCE_MAPS_LAYER}"
"""The evidence maps the comb head's evidence is weighed from, shape (N, maps, 12217)."""
ONNX_BATCH = 32
"""Spectra per batch of the exported network's outputs: the comb head's NumPy steps run per batch
(SciPy's sparse products cost 2.5x as much per spectrum for 8 rows as for 32; BENCHMARKS.md)."""
ONNX_RUN = 8
"""Spectra per ONNX Runtime call within a batch: the first block's activations (0.8 MB per
spectrum) then stay in a core's cache (two prediction threads: +7-16% on AMD AVX-512, no slower on AVX2;
BENCHMARKS.md)."""

Network = Callable[..., dict]
"""Maps inputs ``spectrum`` (N, 12217, 1) and ``continuum`` (N, 10) to :data:`OUTPUT_NAMES` arrays
(or the names given as ``outputs``); has ``name``, ``outputs`` (every output it can give) and
``embedding_size`` (the embedding's length) attributes."""


class OnnxNetwork:
    """The exported network in an ONNX Runtime session (CPU).

    Parameters
    ----------
    path : path-like
        ``model.onnx``.
    threads : int, optional
        Compute threads (default: ONNX Runtime's, one per core).
    line_weights : numpy.ndarray, shape (42, maps), optional
        A comb line head's evidence weights (``heads.npz``); required for the export of a network
        with a comb head.
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 line_weights: np.ndarray | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        # with a memory pattern (planned on the first run, allocated on the second) a session's
        # first two runs are slow; without, only the first, and later runs are as fast (BENCHMARKS.md)
        options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise ModelError(f"{path}: cannot load the exported network ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        # a comb head (its prior logits among the outputs): its evidence and line probabilities
        # are derived here in NumPy from the evidence maps (COMB_OUTPUT)
        self._evidence_matrix = None
        if COMB_PRIOR_OUTPUT in self.outputs:
            if COMB_MAPS_OUTPUT not in self.outputs:
                raise ModelError(f"{path}: exported by an older version (no evidence maps); export the model again")
            if line_weights is None:
                raise ModelError(f"{path}: its line head needs the evidence weights of {HEADS_FILE}; "
                                 "export the model again")
            self._evidence_matrix = line_comb.evidence_matrix(line_weights)
            self.outputs += [COMB_EVIDENCE_OUTPUT, COMB_OUTPUT]
        missing = set(OUTPUT_NAMES) - set(self.outputs)
        if missing:
            raise ModelError(f"{path}: the exported network lacks the outputs {sorted(missing)}")
        self.embedding_size = int(self.session.get_outputs()[self.outputs.index("embedding")].shape[-1])

    def __call__(self, x: dict, outputs: list[str] | None = None) -> dict:
        """The network's outputs: :data:`OUTPUT_NAMES`, or the ones named (of :attr:`outputs`)."""
        names = list(outputs or OUTPUT_NAMES)
        lines = self._evidence_matrix is not None and COMB_OUTPUT in names
        weighed = self._evidence_matrix is not None and (lines or COMB_EVIDENCE_OUTPUT in names)
        asked = [name for name in names if not weighed or name not in (COMB_OUTPUT, COMB_EVIDENCE_OUTPUT)]
        asked += [name for name in (COMB_PRIOR_OUTPUT,) if lines and name not in asked]
        asked += [name for name in (COMB_MAPS_OUTPUT,) if weighed and name not in asked]
        parts = []
        for start in range(0, len(x["continuum"]), ONNX_BATCH):
            feed = {k: np.ascontiguousarray(v[start:start + ONNX_BATCH], dtype=np.float32) for k, v in x.items()}
            runs = [self.session.run(asked, {k: v[i:i + ONNX_RUN] for k, v in feed.items()})
                    for i in range(0, len(feed["continuum"]), ONNX_RUN)]
            part = {name: np.concatenate([run[j] for run in runs]) for j, name in enumerate(asked)}
            if weighed:  # per batch: the maps (100 kB per spectrum) are not kept unless asked for
                part[COMB_EVIDENCE_OUTPUT] = line_comb.evidence(part[COMB_MAPS_OUTPUT], self._evidence_matrix)
            if lines:
                fine = line_comb.fine_distribution(part[COMB_PRIOR_OUTPUT], part[COMB_EVIDENCE_OUTPUT])
                part[COMB_OUTPUT] = line_comb.project(fine)
            parts.append({name: part[name] for name in names})
        return {name: np.concatenate([p[name] for p in parts]) for name in names}


class KerasNetwork:
    """The Keras model with its embedding output, traced once on TensorFlow.

    Parameters
    ----------
    forward : keras.Model
        :attr:`mtopnet_core.inference.TrainedModel.forward`.
    batch_size : int
    training : bool
        True runs dropout (MC dropout).
    """

    name = "keras"

    def __init__(self, forward, batch_size: int = 256, training: bool = False) -> None:
        import keras

        self.batch_size = batch_size
        self.embedding_size = int(forward.output["embedding"].shape[-1])
        self.outputs = list(forward.output)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # `model.predict` costs ~0.6 ms per spectrum more than a traced call (a third of the network)
            self._call = tf.function(lambda x: forward(x, training=training), reduce_retracing=True)
        else:
            self._call = lambda x: forward(x, training=training)
        self._convert = keras.ops.convert_to_numpy

    def __call__(self, x: dict, outputs: list[str] | None = None) -> dict:
        """The network's outputs: :data:`OUTPUT_NAMES`, or the ones named (of :attr:`outputs`)."""
        names = list(outputs or OUTPUT_NAMES)
        parts = []
        for start in range(0, len(x["continuum"]), self.batch_size):
            batch = {k: v[start:start + self.batch_size] for k, v in x.items()}
            parts.append({k: self._convert(v) for k, v in self._call(batch).items() if k in names})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def open_onnx_network(folder: Path, metadata: dict, threads: int | None = None,
                      heads: McHeads | None = None) -> OnnxNetwork | None:
    """The model folder's exported network, or None when it has none.

    ``heads`` are the folder's dense heads (:func:`mtopnet_core.mc_dropout.open_mc_heads`): a comb
    line head's export needs their evidence weights.

    Raises
    ------
    ModelError
        ``model.onnx`` exists but is not the recorded export of this folder's ``model.keras``
        (damaged, or the Keras model was replaced after the export).
    """
    from mtopnet_core.export import ONNX_FILE, file_sha256

    path = folder / ONNX_FILE
    record = metadata.get("onnx")
    if not path.is_file():
        return None
    if not record:
        raise ModelError(f"{path}: not recorded in model.json; export the model again")
    if file_sha256(path) != record.get("sha256"):
        raise ModelError(f"{path}: damaged (its checksum differs from model.json); export the model again")
    if file_sha256(folder / "model.keras") != record.get("keras_sha256"):
        raise ModelError(f"{path}: exported from another model.keras than the one beside it; "
                         "export the model again")
    return OnnxNetwork(path, threads, heads.line_weights if heads is not None else None)
