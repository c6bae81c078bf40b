"""Saliency maps of the redshift prediction (paper, section 4.3 and Fig. 9).

The saliency of channel i is |d p_k / d x_i|, the gradient of the probability of the predicted
redshift bin k (the PDF's peak, or a chosen bin) with respect to the input spectrum, taken with
the network in inference mode. Gradients need the backend's own machinery; TensorFlow, JAX and
PyTorch are supported, so the maps work under any Keras 3 backend.
"""

from __future__ import annotations

import weakref

import numpy as np

from mtopnet_core.inference import TrainedModel
from mtopnet_core.preprocessing import preprocess
from mtopnet_core.spectra import Spectra

__all__ = ["saliency_maps", "saliency_for_spectra"]

# one traced TensorFlow gradient per model: eager mode costs ~6x more per call (0.065 vs 0.010 s for one spectrum)
_TF_GRADIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tf_gradient(model):
    if model not in _TF_GRADIENTS:
        import tensorflow as tf

        n_channels, n_bins = model.input["spectrum"].shape[1], model.get_layer("redshift").output.shape[-1]
        n_continuum = model.input["continuum"].shape[1]

        @tf.function(input_signature=[tf.TensorSpec([None, n_channels, 1]), tf.TensorSpec([None, n_continuum]),
                                      tf.TensorSpec([None, n_bins])])
        def gradient(x, c, pick):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tf.reduce_sum(model({"spectrum": x, "continuum": c}, training=False)["redshift"] * pick)
            return tape.gradient(value, x)

        _TF_GRADIENTS[model] = gradient
    return _TF_GRADIENTS[model]


def _gradient(model, spectrum: np.ndarray, continuum: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """d (probability of ``bins``) / d spectrum through the Keras model (keras.Model), on its backend."""
    import keras  # here: the app and prediction import this module without TensorFlow

    backend = keras.backend.backend()
    pick = np.eye(model.get_layer("redshift").output.shape[-1], dtype=np.float32)[bins]

    def target(outputs):
        return keras.ops.sum(outputs["redshift"] * pick)

    if backend == "tensorflow":
        return _tf_gradient(model)(spectrum.astype(np.float32), continuum.astype(np.float32), pick).numpy()
    if backend == "jax":
        import jax

        c = jax.numpy.asarray(continuum)
        grad = jax.grad(lambda x: target(model({"spectrum": x, "continuum": c}, training=False)))
        return np.asarray(grad(jax.numpy.asarray(spectrum)))
    if backend == "torch":
        import torch

        x = torch.tensor(spectrum, requires_grad=True)
        target(model({"spectrum": x, "continuum": torch.tensor(continuum)}, training=False)).backward()
        return x.grad.detach().cpu().numpy()
    raise NotImplementedError(f"saliency maps need the tensorflow, jax or torch backend, not {backend}")


def saliency_maps(trained: TrainedModel, lines: np.ndarray, continuum: np.ndarray,
                  bins: np.ndarray | None = None, batch_size: int = 64) -> np.ndarray:
    """Saliency of every input channel for the redshift output.

    Parameters
    ----------
    trained : TrainedModel
    lines : numpy.ndarray, shape (N, 12217)
        Preprocessed (continuum-subtracted, normalised) spectra.
    continuum : numpy.ndarray, shape (N, 10)
        Continuum vectors before standardisation.
    bins : numpy.ndarray of int, shape (N,), optional
        Redshift bin whose probability is differentiated; default: each PDF's peak.
    batch_size : int

    Returns
    -------
    numpy.ndarray, shape (N, 12217), float32
        |d p / d x|, in probability per unit of normalised flux.
    """
    lines = np.atleast_2d(lines).astype(np.float32)
    x_cont = trained.standardiser.continuum(np.atleast_2d(continuum))
    if bins is None:
        bins = trained.network({"spectrum": lines[..., None], "continuum": x_cont})["redshift"].argmax(axis=1)
    out = np.empty(lines.shape, np.float32)
    for start in range(0, len(lines), batch_size):
        part = slice(start, start + batch_size)
        grad = _gradient(trained.model, lines[part][..., None], x_cont[part], np.asarray(bins)[part])
        out[part] = np.abs(grad[..., 0])
    return out


def saliency_for_spectra(trained: TrainedModel, spectra: Spectra, bins: np.ndarray | None = None) -> np.ndarray:
    """Preprocess spectra on the MOONS grid and return their saliency maps, shape (N, 12217).

    Spectra that cannot be processed get rows of NaN.
    """
    pre = preprocess(spectra, trained.preprocessing)
    out = np.full(pre.lines.shape, np.nan, np.float32)
    if pre.usable.any():
        chosen = None if bins is None else np.asarray(bins)[pre.usable]
        out[pre.usable] = saliency_maps(trained, pre.lines[pre.usable], pre.continuum[pre.usable], chosen)
    return out
