"""Monte Carlo dropout without TensorFlow: the trunk once, the heads many times, in NumPy.

Dropout follows only the hidden layers of the four heads (:mod:`mtopnet_core.model`), so every
MC pass shares the convolutional trunk: the exported network gives its outputs once (outputs
:data:`HEAD_INPUTS`), and each pass runs the small dense layers after it with fresh dropout
masks: the line head, whose last hidden layer joins the shared layer (so its first dropout
reaches the other heads too), the shared layer's batch normalisation (an affine map in
inference mode) and the three physical heads. With TensorFlow every pass ran the whole network
again (the trunk is almost all of its cost); here the passes cost the dense layers alone. Their
weights are stored beside the export as plain arrays (``heads.npz``, never a pickle), recorded
with their checksum in ``model.json["mc_heads"]``. A comb line head (:mod:`mtopnet_core.line_comb`)
ends its MLP in redshift-bin logits; the trunk's fine-bin evidence is one more network output, and
the passes' mean fine distribution is projected once.

Dropout as Keras runs it in training mode: each hidden unit is kept with probability 1 - rate
and the kept ones are scaled by 1 / (1 - rate); the batch normalisation stays in inference mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtopnet_core import line_comb
from mtopnet_core.errors import ModelError
from mtopnet_core.tasks import TASKS, Task

__all__ = ["HEADS_FILE", "HEAD_INPUTS", "HEAD_INPUT_LAYERS", "LINE_TASK", "McHeads", "export_heads", "open_mc_heads"]

HEADS_FILE = "heads.npz"
"""Name of the heads' weights inside a model folder."""
HEAD_INPUT_LAYERS = {"features": "spectral_features", "features_norm": "spectral_features_norm",
                     "encoded": "continuum_dense", "line_evidence": line_comb.EVIDENCE_LAYER}
"""The trunk's layers whose outputs the dense layers after it read (the shared layer concatenates
the features, the encoded continuum and the hidden layers of the heads that read the features;
a comb line head adds its fine bins' evidence). A model without one of them lacks it among its outputs."""
LINE_TASK = next(task.name for task in TASKS if task.label == "line_mask")
"""The line-location task, whose passes are averaged only (:meth:`McHeads.line_mean`)."""
COMB_KEY = "comb"
"""Key in ``heads.npz`` of a task whose head is a comb (its last layer gives redshift-bin logits)."""
LINE_WEIGHTS_KEY = "line_weights"
"""Key in ``heads.npz`` of a comb head's evidence weights, shape (42, maps) (the exported network
gives the evidence maps; :class:`mtopnet_core.runtime.OnnxNetwork` weighs them in NumPy)."""
HEAD_INPUTS = {kind: f"trunk_{kind}" for kind in HEAD_INPUT_LAYERS}
"""Name of each of them among the network's outputs."""
SHARED_NORM_LAYER = "shared_info"


def export_heads(model, folder: str | os.PathLike) -> dict:
    """Write the dense layers of every head into ``heads.npz``.

    Parameters
    ----------
    model : keras.Model
        The trained network (:func:`mtopnet_core.model.build_model`).
    folder : str or path-like
        The model folder.

    Returns
    -------
    dict
        The record for ``model.json["mc_heads"]``: ``file``, ``sha256``, ``keras_sha256`` (of the
        model.keras they came from) and ``dropout`` (the rate).
    """
    import keras

    from mtopnet_core.export import file_sha256
    from mtopnet_core.jsonio import atomic_path
    from mtopnet_core.model import BoundedBatchNormalization, head_output_layer

    norm = model.get_layer(SHARED_NORM_LAYER)
    gamma, beta, mean, variance = norm.get_weights()
    # inference-mode batch normalisation as one affine map, x * scale + offset, then its bound
    scale = gamma / np.sqrt(variance + norm.epsilon)
    arrays = {"shared.scale": scale, "shared.offset": beta - mean * scale}
    if isinstance(norm, BoundedBatchNormalization):
        arrays["shared.lower"], arrays["shared.upper"] = (keras.ops.convert_to_numpy(v) for v in norm.inference_range())
    for task in TASKS:
        last = head_output_layer(model, task)
        names = [f"{task.name}_dense_{i}" for i in range(1, len(task.hidden_units) + 1)] + [last]
        for k, name in enumerate(names):
            kernel, bias = model.get_layer(name).get_weights()
            arrays[f"{task.name}.{k}.kernel"], arrays[f"{task.name}.{k}.bias"] = kernel, bias
        if last != task.name:
            arrays[f"{task.name}.{COMB_KEY}"] = np.array(1, np.int8)
            arrays[f"{task.name}.{LINE_WEIGHTS_KEY}"] = model.get_layer(line_comb.EVIDENCE_LAYER).get_weights()[0]
    rates = {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    if len(rates) != 1:
        raise ModelError(f"the heads' dropout rates differ ({sorted(rates)}); MC heads need one rate")
    target = Path(folder) / HEADS_FILE
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    return {"file": HEADS_FILE, "sha256": file_sha256(target),
            "keras_sha256": file_sha256(Path(folder) / "model.keras"), "dropout": float(rates.pop())}


_ACTIVATIONS = {
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),  # no overflow warnings for large |x|
    "softmax": lambda x: (lambda e: e / e.sum(axis=-1, keepdims=True))(np.exp(x - x.max(axis=-1, keepdims=True))),
    None: lambda x: x,
}


class McHeads:
    """The four heads' dense layers in NumPy, with dropout.

    Parameters
    ----------
    path : path-like
        ``heads.npz`` (:func:`export_heads`).
    dropout : float
        The rate the network was trained with.
    """

    def __init__(self, path: str | os.PathLike, dropout: float) -> None:
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name].astype(np.float32) for name in stored.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{path}: cannot read the heads' weights ({exc})") from None
        self.dropout = float(dropout)
        try:
            self.shared_scale, self.shared_offset = arrays["shared.scale"], arrays["shared.offset"]
        except KeyError:
            raise ModelError(f"{path}: no shared-layer normalisation") from None
        # its bound (model.BoundedBatchNormalization); None for a network without one
        self.shared_bounds = (arrays["shared.lower"], arrays["shared.upper"]) if "shared.lower" in arrays else None
        self.layers = {}
        for task in TASKS:
            count = len(task.hidden_units) + 1
            try:
                self.layers[task.name] = [(arrays[f"{task.name}.{k}.kernel"], arrays[f"{task.name}.{k}.bias"])
                                          for k in range(count)]
            except KeyError:
                raise ModelError(f"{path}: no weights for the {task.name} head") from None
        self.combs = {task.name for task in TASKS if f"{task.name}.{COMB_KEY}" in arrays}
        # the comb head's evidence weights, (42, maps); None for another head or an older export
        self.line_weights = arrays.get(f"{LINE_TASK}.{LINE_WEIGHTS_KEY}")

    @property
    def inputs(self) -> list[str]:
        """The network outputs :meth:`run` reads."""
        kinds = [kind for kind in HEAD_INPUTS if kind != "line_evidence" or self.combs]
        return [HEAD_INPUTS[kind] for kind in kinds]

    def run(self, inputs: dict[str, np.ndarray], rng: np.random.Generator | None = None,
            rate: float | None = None, project: bool = True) -> dict[str, np.ndarray]:
        """One pass of the dense layers after the trunk.

        Parameters
        ----------
        inputs : dict
            :attr:`inputs` arrays from the network, shapes (N, features), (N, features),
            (N, encoded) and, for a comb head, (N, 4000).
        rng : numpy.random.Generator, optional
            Draws the dropout masks; None runs without dropout (the deterministic network).
        rate : float, optional
            Dropout rate (default: the network's).
        project : bool
            False gives a comb head's fine redshift distribution, (N, 4000), instead of its line
            probabilities (:meth:`line_mean` projects the mean of many passes once).

        Returns
        -------
        dict
            One array per task, shaped as the network's outputs.
        """
        rate = self.dropout if rate is None else rate

        def head(x: np.ndarray, task: Task) -> tuple[np.ndarray, np.ndarray]:
            """(last hidden layer before its dropout, output) of one head."""
            *hidden, (kernel, bias) = self.layers[task.name]
            for weights, offset in hidden:
                joined = np.maximum(x @ weights + offset, 0.0)
                x = joined
                if rng is not None and rate > 0:
                    x = joined * (rng.random(joined.shape, dtype=np.float32) >= rate) / np.float32(1.0 - rate)
            if task.name in self.combs:
                fine = line_comb.fine_distribution(x @ kernel + bias, inputs[HEAD_INPUTS["line_evidence"]])
                return joined, line_comb.project(fine) if project else fine
            return joined, _ACTIVATIONS[task.activation](x @ kernel + bias)

        out, joining = {}, []
        features = inputs[HEAD_INPUTS["features_norm"]].astype(np.float32, copy=False)
        for task in (t for t in TASKS if t.reads == "features"):
            hidden, out[task.name] = head(features, task)
            joining.append(hidden)
        parts = [inputs[HEAD_INPUTS["features"]], inputs[HEAD_INPUTS["encoded"]], *joining]
        shared = np.concatenate([p.astype(np.float32, copy=False) for p in parts], axis=1)
        shared = shared * self.shared_scale + self.shared_offset
        if self.shared_bounds is not None:
            shared = np.clip(shared, *self.shared_bounds)
        for task in (t for t in TASKS if t.reads == "shared"):
            _, out[task.name] = head(shared, task)
        return {task.name: out[task.name] for task in TASKS}

    def passes(self, inputs: dict[str, np.ndarray], n_passes: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
        """``n_passes`` passes with independent dropout masks (the same ones for the same seed); a
        comb head's entry is each pass's fine distribution (:meth:`line_mean` gives their lines)."""
        rng = np.random.default_rng(seed)
        return [self.run(inputs, rng, project=False) for _ in range(n_passes)]

    def line_mean(self, values: list[np.ndarray]) -> np.ndarray:
        """Mean line-location probabilities of :meth:`passes`' line-head entries, shape (N, 12217).

        The comb's projection is linear, so the mean of the passes' fine distributions is
        projected once (the projection of every pass cost ~1 ms per spectrum at 10 passes).
        """
        mean = sum(values) / len(values)
        return line_comb.project(mean) if LINE_TASK in self.combs else mean


def open_mc_heads(folder: Path, metadata: dict) -> McHeads | None:
    """The model folder's heads for MC dropout, or None when it has none (MC dropout then runs in Keras).

    Raises
    ------
    ModelError
        ``heads.npz`` is not the one recorded in model.json (damaged or replaced).
    """
    from mtopnet_core.export import file_sha256

    record = metadata.get("mc_heads")
    if not record:
        return None
    path = folder / record.get("file", HEADS_FILE)
    if not path.is_file():
        raise ModelError(f"{path}: missing (recorded in model.json); export the model again")
    if file_sha256(path) != record.get("sha256"):
        raise ModelError(f"{path}: damaged (its checksum differs from model.json); export the model again")
    if file_sha256(folder / "model.keras") != record.get("keras_sha256"):
        raise ModelError(f"{path}: exported from another model.keras than the one beside it; export the model again")
    return McHeads(path, record["dropout"])
