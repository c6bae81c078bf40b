"""The M-TOPnet network (paper, section 3.2 and Fig. 3), in backend-agnostic Keras 3.

Two inputs: the normalised continuum-subtracted spectrum (12 217 channels) and the standardised
ten-point continuum vector. The spectrum goes through residual Conv1D blocks (two convolutions
with ReLU and a skip connection, then average pooling by 5; filters growing from 16 to 64); the
continuum through Dense(32). The line-location head (64, 128, sigmoid over every channel) reads
the convolutional features, and its 128-unit hidden layer joins the flattened features and the
encoded continuum, after batch normalisation, in the 'shared info' layer that feeds the redshift
head (64, 128, softmax over the 800 bins) and the log M* and log SFR heads (64, 32, linear).
Dropout 0.2 follows every hidden layer of the heads. The heads' widths, outputs, activations
and losses come from the task registry (:mod:`mtopnet_core.tasks`).

Where the paper is silent we chose, and say why:

- 4 residual blocks with filters (16, 32, 48, 64) and kernel 7: four poolings by 5 take 12 217
  channels to 19, the line-location head then dominates the parameters, and the whole network
  has ~2.2 M parameters, trainable on our 2-core CPU at ~200 spectra/s;
- a 1x1 convolution on the skip path when the number of filters changes (He et al. 2015);
- Adam (the learning-rate schedule is the paper's; see :mod:`mtopnet_core.training`).

Layers and outputs are named, so that saliency maps and the embedding (the first dense layer of
each physical head) can be taken from the model by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import keras
from keras import layers

from mtopnet_core import grid
from mtopnet_core.tasks import EMBEDDING_LAYERS, TASKS, default_loss_weights

__all__ = ["ModelConfig", "build_model", "compile_model", "EMBEDDING_LAYERS"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and loss settings; saved with every model.

    Attributes
    ----------
    filters : tuple of int
        Filters of each residual block (one block per entry).
    kernel_size : int
        Width of every convolution, channels.
    pool_size : int
        Average-pooling factor after each block (paper: 5).
    continuum_units : int
        Width of the continuum encoder (paper: 32).
    dropout : float
        Dropout after every hidden dense layer (paper: 0.2).
    loss_weights : dict
        Weight of each task's loss (paper: line location 10, the others 1). A weight of 0
        turns a task off, for the paper's ablations.
    n_continuum : int
        Length of the continuum vector.
    """

    filters: tuple[int, ...] = (16, 32, 48, 64)
    kernel_size: int = 7
    pool_size: int = 5
    continuum_units: int = 32
    dropout: float = 0.2
    loss_weights: dict = field(default_factory=default_loss_weights)
    n_continuum: int = 10

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _residual_block(x, filters: int, kernel_size: int, pool_size: int, name: str):
    skip = x
    x = layers.Conv1D(filters, kernel_size, padding="same", activation="relu", name=f"{name}_conv1")(x)
    x = layers.Conv1D(filters, kernel_size, padding="same", name=f"{name}_conv2")(x)
    if skip.shape[-1] != filters:
        skip = layers.Conv1D(filters, 1, padding="same", name=f"{name}_project")(skip)
    x = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([x, skip]))
    return layers.AveragePooling1D(pool_size, name=f"{name}_pool")(x)


def _mlp(x, units: tuple[int, ...], dropout: float, name: str):
    """Dense layers, each followed by dropout; returns (last dense output, output after its dropout)."""
    for i, width in enumerate(units, start=1):
        dense = layers.Dense(width, activation="relu", name=f"{name}_dense_{i}")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout_{i}")(dense)
    return dense, x


def build_model(config: ModelConfig | None = None) -> keras.Model:
    """Build the M-TOPnet Functional model.

    Parameters
    ----------
    config : ModelConfig, optional

    Returns
    -------
    keras.Model
        Inputs ``spectrum`` (N, 12217, 1) and ``continuum`` (N, 10); outputs ``line_location``
        (N, 12217) sigmoid, ``redshift`` (N, 800) softmax, ``log_mstar`` and ``log_sfr`` (N, 1)
        standardised.
    """
    config = config or ModelConfig()
    spectrum = keras.Input(shape=(grid.N_CHANNELS, 1), name="spectrum")
    continuum = keras.Input(shape=(config.n_continuum,), name="continuum")

    x = spectrum
    for i, filters in enumerate(config.filters, start=1):
        x = _residual_block(x, filters, config.kernel_size, config.pool_size, name=f"block{i}")
    features = layers.Flatten(name="spectral_features")(x)
    encoded = layers.Dense(config.continuum_units, activation="relu", name="continuum_dense")(continuum)

    # the line head reads the features normalised: after four poolings by 5 a narrow line is
    # averaged over 625 channels, the raw features vary by ~0.2% across spectra, and a head fed
    # them directly collapsed to the per-channel prior with every ReLU dead (shipped model v3)
    normalised = layers.BatchNormalization(name="spectral_features_norm")(features)
    outputs, joining = {}, []
    for task in (t for t in TASKS if t.reads == "features"):
        hidden, dropped = _mlp(normalised, task.hidden_units, config.dropout, task.name)
        outputs[task.name] = layers.Dense(task.output_size, activation=task.activation, name=task.name)(dropped)
        joining.append(hidden)

    # the line head's hidden layer joins before its dropout: dropout feeding batch normalisation
    # changes the variance between training and inference (Li et al. 2019), which made the
    # validation losses jump by factors of ten from epoch to epoch
    shared = layers.Concatenate(name="shared_concat")([features, encoded, *joining])
    shared = layers.BatchNormalization(name="shared_info")(shared)
    for task in (t for t in TASKS if t.reads == "shared"):
        _, dropped = _mlp(shared, task.hidden_units, config.dropout, task.name)
        outputs[task.name] = layers.Dense(task.output_size, activation=task.activation, name=task.name)(dropped)

    return keras.Model(inputs={"spectrum": spectrum, "continuum": continuum},
                       outputs={t.name: outputs[t.name] for t in TASKS}, name="mtopnet")


def compile_model(model: keras.Model, config: ModelConfig | None = None,
                  learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.005) -> keras.Model:
    """Compile with the paper's losses and task weights (section 3.2.3) and Adam.

    Losses (:data:`~mtopnet_core.tasks.TASKS`): binary cross-entropy (line location),
    categorical cross-entropy (redshift), mean squared error (log M*, log SFR).
    """
    config = config or ModelConfig()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss={t.name: getattr(keras.losses, t.loss)() for t in TASKS},
        loss_weights=dict(config.loss_weights),
    )
    return model
