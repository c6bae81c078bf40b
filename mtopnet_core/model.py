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

The line-location head comes in two forms (``ModelConfig.line_head``):

- ``"paper"``: the paper's MLP with a sigmoid per channel. Trained on our mocks it blurs every
  line over ~35 channels and places few of them (:mod:`mtopnet_core.line_comb`);
- ``"comb"`` (the default): the same MLP ends in 800 logits, one per redshift bin, which the
  spectrum's line evidence refines to 4 000 fine bins: a 1-D convolution of the first residual
  block's full-resolution features gives two evidence maps, and each fine bin's log-likelihood
  is a learnt weight per Table 1 line (and map) times the maps at the channels where the lines
  would fall (:class:`LineEvidence`). The fine distribution is projected through the labels'
  own line windows (:class:`LineComb`). The MLP's hidden layer joins the shared layer as in the
  paper.

Where the paper is silent we chose, and say why:

- 4 residual blocks with filters (16, 32, 48, 64) and kernel 7: four poolings by 5 take 12 217
  channels to 19; the whole network has 0.68 M parameters with the comb line head (2.2 M with the
  paper's, 1.6 M of them its output layer); on 2 AVX-512 cores TensorFlow trains 212 spectra/s
  with the comb head (0.30 s per step of 64) and 234 with the paper's (BENCHMARKS.md);
- a 1x1 convolution on the skip path when the number of filters changes (He et al. 2015);
- Adam (the learning-rate schedule is the paper's; see :mod:`mtopnet_core.training`).

Layers and outputs are named, so that saliency maps and the embedding (the first dense layer of
each physical head) can be taken from the model by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import keras
import numpy as np
from keras import layers, ops

from mtopnet_core import grid, line_comb
from mtopnet_core.line_comb import EVIDENCE_LAYER, EVIDENCE_MAPS_LAYER, LINE_HEADS, PRIOR_SUFFIX
from mtopnet_core.lines import TABLE1_LINES
from mtopnet_core.tasks import EMBEDDING_LAYERS, TASKS, Task, default_loss_weights

__all__ = ["ModelConfig", "build_model", "compile_model", "head_output_layer", "BoundedBatchNormalization",
           "LineEvidence", "LineComb", "LINE_HEADS", "EMBEDDING_LAYERS"]


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
    line_head : {"comb", "paper"}
        Form of the line-location head (module docstring). Models saved before it existed
        have the paper's.
    evidence_maps : int
        Evidence maps of the comb head.
    """

    filters: tuple[int, ...] = (16, 32, 48, 64)
    kernel_size: int = 7
    pool_size: int = 5
    continuum_units: int = 32
    dropout: float = 0.2
    loss_weights: dict = field(default_factory=default_loss_weights)
    n_continuum: int = 10
    line_head: str = "comb"
    evidence_maps: int = 2

    def __post_init__(self) -> None:
        if self.line_head not in LINE_HEADS:
            raise ValueError(f"line_head must be one of {LINE_HEADS}, got {self.line_head!r}")

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict` (a record without ``line_head`` is a model with the paper's)."""
        values = {"line_head": "paper", **values}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def same_trunk(self, other: ModelConfig) -> bool:
        """Whether ``other`` differs at most in the line head, so its trained layers fit this network."""
        strip = {"line_head": None, "evidence_maps": None}
        return {**self.to_dict(), **strip} == {**other.to_dict(), **strip}


def _residual_block(x, filters: int, kernel_size: int, pool_size: int, name: str):
    skip = x
    x = layers.Conv1D(filters, kernel_size, padding="same", activation="relu", name=f"{name}_conv1")(x)
    x = layers.Conv1D(filters, kernel_size, padding="same", name=f"{name}_conv2")(x)
    if skip.shape[-1] != filters:
        skip = layers.Conv1D(filters, 1, padding="same", name=f"{name}_project")(skip)
    x = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([x, skip]))
    return layers.AveragePooling1D(pool_size, name=f"{name}_pool")(x), x


def _mlp(x, units: tuple[int, ...], dropout: float, name: str):
    """Dense layers, each followed by dropout; returns (last dense output, output after its dropout)."""
    for i, width in enumerate(units, start=1):
        dense = layers.Dense(width, activation="relu", name=f"{name}_dense_{i}")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout_{i}")(dense)
    return dense, x


def build_model(config: ModelConfig | None = None, batch_size: int = 64) -> keras.Model:
    """Build the M-TOPnet Functional model.

    Parameters
    ----------
    config : ModelConfig, optional
    batch_size : int
        Spectra per training batch, which bounds the normalised features at inference
        (:class:`BoundedBatchNormalization`).

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
    full_resolution = []
    for i, filters in enumerate(config.filters, start=1):
        x, unpooled = _residual_block(x, filters, config.kernel_size, config.pool_size, name=f"block{i}")
        full_resolution.append(unpooled)
    features = layers.Flatten(name="spectral_features")(x)
    encoded = layers.Dense(config.continuum_units, activation="relu", name="continuum_dense")(continuum)

    # the line head reads the features normalised: after four poolings by 5 a narrow line is
    # averaged over 625 channels, the raw features vary by ~0.2% across spectra, and a head fed
    # them directly collapsed to the per-channel prior with every ReLU dead (shipped model v3)
    bound = BoundedBatchNormalization.training_bound(batch_size)
    normalised = BoundedBatchNormalization(bound, name="spectral_features_norm")(features)
    outputs, joining = {}, []
    for task in (t for t in TASKS if t.reads == "features"):
        hidden, dropped = _mlp(normalised, task.hidden_units, config.dropout, task.name)
        if task.label == "line_mask" and config.line_head == "comb":
            outputs[task.name] = _comb_head(dropped, full_resolution[0], task, config)
        else:
            outputs[task.name] = layers.Dense(task.output_size, activation=task.activation, name=task.name)(dropped)
        joining.append(hidden)

    # the line head's hidden layer joins before its dropout: dropout feeding batch normalisation
    # changes the variance between training and inference (Li et al. 2019), which made the
    # validation losses jump by factors of ten from epoch to epoch
    shared = layers.Concatenate(name="shared_concat")([features, encoded, *joining])
    shared = BoundedBatchNormalization(bound, name="shared_info")(shared)
    for task in (t for t in TASKS if t.reads == "shared"):
        _, dropped = _mlp(shared, task.hidden_units, config.dropout, task.name)
        outputs[task.name] = layers.Dense(task.output_size, activation=task.activation, name=task.name)(dropped)

    return keras.Model(inputs={"spectrum": spectrum, "continuum": continuum},
                       outputs={t.name: outputs[t.name] for t in TASKS}, name="mtopnet")


def _comb_head(dropped, features, task: Task, config: ModelConfig):
    """The comb form of the line-location head (module docstring)."""
    prior = layers.Dense(grid.N_Z_BINS, name=f"{task.name}{PRIOR_SUFFIX}")(dropped)
    maps = layers.Conv1D(config.evidence_maps, config.kernel_size, padding="same",
                         name=EVIDENCE_MAPS_LAYER)(features)
    evidence = LineEvidence(name=EVIDENCE_LAYER)(maps)
    return LineComb(name=task.name)([prior, evidence])


def head_output_layer(model: keras.Model, task: Task) -> str:
    """Name of the last dense layer of a task's head (the comb head's is its prior)."""
    names = {layer.name for layer in model.layers}
    return f"{task.name}{PRIOR_SUFFIX}" if f"{task.name}{PRIOR_SUFFIX}" in names else task.name


class _SparseProduct:
    """Product with a fixed sparse matrix, rows first: ``y = S @ x`` with x of shape (n_cols, B).

    Written as gathers and *sorted* segment sums with its own gradient (the transpose, sorted by
    column): TensorFlow's gradient of a gather is an unsorted scatter (3x slower than a sorted
    segment sum here). The comb head's two layers, forward and backward on 64 spectra, took 166
    ms as plain gathers and take 64 ms this way (TensorFlow, 2 AVX-512 cores). The values are fixed
    (:meth:`fixed`) or given per call and trained (:meth:`trainable`).

    Parameters
    ----------
    rows, cols : numpy.ndarray, shape (E,), int
        The entries' positions.
    shape : tuple of int
        (n_rows, n_cols).
    values : numpy.ndarray, shape (E,), optional
        The entries' fixed values, for :meth:`fixed`.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int],
                 values: np.ndarray | None = None) -> None:
        n_rows, n_cols = shape
        # a zero entry at the last row and column, so that the sorted segment sums see every segment
        rows, cols = np.append(rows, n_rows - 1), np.append(cols, n_cols - 1)
        self._by_row = np.lexsort((cols, rows)).astype(np.int32)
        self._rows, self._cols = rows[self._by_row].astype(np.int32), cols[self._by_row].astype(np.int32)
        self._by_col = np.argsort(self._cols, kind="stable").astype(np.int32)
        self._shape = shape
        if values is not None:
            self._values = np.append(np.asarray(values, np.float32), 0.0)[self._by_row].astype(np.float32)

    def fixed(self, x):
        """``S @ x`` with the values given at construction; x shape (n_cols, B), result (n_rows, B)."""
        values = self._values

        @ops.custom_gradient
        def product(x):
            def gradient(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                return self._transpose_product(upstream, values[self._by_col])
            return self._sum_rows(ops.take(x, self._cols, axis=0), values), gradient
        return product(x)

    def trainable(self, x, values):
        """``S @ x`` with ``values`` (shape (E,), in the constructor's entry order), differentiable in both."""
        values = ops.take(ops.pad(values, [[0, 1]]), self._by_row, axis=0)

        @ops.custom_gradient
        def product(x, values):
            gathered = ops.take(x, self._cols, axis=0)  # kept for the values' gradient

            def gradient(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                by_entry = ops.sum(ops.take(upstream, self._rows, axis=0) * gathered, axis=1)
                return self._transpose_product(upstream, ops.take(values, self._by_col, axis=0)), by_entry
            return self._sum_rows(gathered, values), gradient
        return product(x, values)

    def _sum_rows(self, gathered, values):
        summed = _sorted_segment_sum(gathered * values[:, None], self._rows, self._shape[0])
        return ops.reshape(summed, (self._shape[0], -1))

    def _transpose_product(self, upstream, values_by_col):
        gathered = ops.take(upstream, self._rows[self._by_col], axis=0) * values_by_col[:, None]
        return ops.reshape(_sorted_segment_sum(gathered, self._cols[self._by_col], self._shape[1]),
                           (self._shape[1], -1))


def _sorted_segment_sum(data, segment_ids: np.ndarray, n_segments: int):
    # TensorFlow refuses num_segments for sorted ids (the last id must then be n_segments - 1);
    # JAX requires it
    n_segments = None if keras.backend.backend() == "tensorflow" else n_segments
    return ops.segment_sum(data, segment_ids, num_segments=n_segments, sorted=True)


@lru_cache(maxsize=4)
def _evidence_product(n_maps: int) -> tuple[_SparseProduct, np.ndarray]:
    """The evidence layer's sparse product (maps flattened channel-major) and each entry's weight index."""
    fine_bin, line, channel = line_comb.evidence_entries()
    maps = np.arange(n_maps)[:, None]
    columns = (channel[None, :] * n_maps + maps).ravel()
    product = _SparseProduct(np.tile(fine_bin, n_maps), columns, (line_comb.N_FINE_BINS, grid.N_CHANNELS * n_maps))
    return product, (line[None, :] * n_maps + maps).ravel()


@lru_cache(maxsize=1)
def _projection_product() -> _SparseProduct:
    """The comb's projection as a product with the cumulative distribution: +1 at each interval's
    upper end, -1 at its lower end (:func:`~mtopnet_core.line_comb.mask_intervals`)."""
    channel, lower, upper = line_comb.mask_intervals()
    values = np.concatenate([np.ones(channel.size), -np.ones(channel.size)])
    return _SparseProduct(np.tile(channel, 2), np.concatenate([upper, lower]),
                         (grid.N_CHANNELS, line_comb.N_FINE_BINS + 1), values)


@keras.saving.register_keras_serializable(package="mtopnet")
class BoundedBatchNormalization(layers.BatchNormalization):
    """Batch normalisation whose inference output stays within the range training can produce.

    In training, a batch of B spectra normalises each feature by the batch's own statistics, and
    no normalised value can exceed sqrt(B - 1) in size (one value against B - 1 equal ones). At
    inference the statistics are the training set's: a feature that is zero for nearly every
    training spectrum (most of the flattened trunk features of the trained networks; variance
    ~0) normalises to thousands on the rare spectrum that fires it, where a training batch gave
    it ~8, and a log M* came out 145 dex off (a validation galaxy, epoch 18 of the paper-size
    run). At inference the normalised value is therefore clipped to +-``bound`` before the
    learnt scale and offset; training is unchanged.

    Parameters
    ----------
    bound : float
        Largest normalised value in size (:meth:`training_bound`).
    **kwargs
        Passed to :class:`keras.layers.BatchNormalization`.
    """

    def __init__(self, bound: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bound = float(bound)

    @staticmethod
    def training_bound(batch_size: int) -> float:
        """The largest normalised value a training batch of ``batch_size`` can produce."""
        return float(np.sqrt(max(batch_size - 1, 1)))

    def inference_range(self):
        """(lower, upper) of each output feature at inference: ``beta -+ bound * |gamma|``."""
        reach = self.bound * ops.abs(self.gamma)
        return self.beta - reach, self.beta + reach

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        if training and self.trainable:  # batch statistics (a frozen layer uses the stored ones)
            return outputs
        lower, upper = self.inference_range()
        return ops.minimum(ops.maximum(outputs, lower), upper)

    def get_config(self) -> dict:
        return {**super().get_config(), "bound": self.bound}


@keras.saving.register_keras_serializable(package="mtopnet")
class LineEvidence(layers.Layer):
    """Log-likelihood of every fine redshift bin from line-evidence maps.

    For fine bin s: the sum over Table 1 lines l and maps m of ``weight[l, m] * map_m[c(l, s)]``,
    where c(l, s) is the channel of line l at that redshift
    (:func:`~mtopnet_core.line_comb.fine_line_channels`); lines off the grid add nothing. The
    weights start at zero (the head starts as its MLP's prior alone). A sparse product
    (:class:`_SparseProduct`; :func:`~mtopnet_core.line_comb.evidence_matrix` in NumPy).

    Input shape (N, 12217, maps); output shape (N, 4000).
    """

    def build(self, input_shape) -> None:
        self.line_weights = self.add_weight(shape=(len(TABLE1_LINES), input_shape[-1]), initializer="zeros",
                                            name="line_weights")

    def call(self, maps):
        n_maps = maps.shape[-1]
        product, weight_index = _evidence_product(n_maps)
        flat = ops.transpose(ops.reshape(maps, (-1, grid.N_CHANNELS * n_maps)))
        weights = ops.take(ops.reshape(self.line_weights, (-1,)), weight_index, axis=0)
        return ops.transpose(product.trainable(flat, weights))

    def compute_output_shape(self, input_shape):
        return input_shape[0], line_comb.N_FINE_BINS


@keras.saving.register_keras_serializable(package="mtopnet")
class LineComb(layers.Layer):
    """Line-location probabilities from the prior logits and the fine bins' evidence.

    The fine distribution is the softmax of each redshift bin's prior logit plus the evidence of
    its fine bins; the probability of channel c is its mass over the fine bins whose label marks
    c (:func:`~mtopnet_core.line_comb.mask_intervals`, :func:`~mtopnet_core.line_comb.project`),
    a difference of the cumulative distribution per interval.

    Inputs shapes (N, 800) and (N, 4000); output shape (N, 12217).
    """

    def call(self, inputs):
        prior, evidence = inputs
        fine = ops.softmax(ops.repeat(prior, line_comb.FINE_BINS_PER_Z_BIN, axis=1) + evidence, axis=-1)
        cdf = ops.pad(ops.transpose(ops.cumsum(fine, axis=1)), [[1, 0], [0, 0]])
        return ops.clip(ops.transpose(_projection_product().fixed(cdf)), 0.0, 1.0)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0][0], grid.N_CHANNELS


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
