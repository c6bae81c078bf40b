"""The task registry: M-TOPnet's four tasks (paper, section 3.2), the one place that names them.

Each :class:`Task` says how its head is built (hidden widths, output size, activation, what it
reads), how it is trained (loss, weight, label), and what it gives the results (a catalogue
column). The model (:mod:`mtopnet_core.model`), the labels and the standardisation
(:mod:`mtopnet_core.labels`, :class:`~mtopnet_core.preprocessing.Standardiser`), inference and
the results read this list, so a new task is one more entry here and its label function.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtopnet_core import grid

__all__ = ["Task", "TASKS", "TASK_NAMES", "SCALAR_TASKS", "EMBEDDING_LAYERS", "task", "default_loss_weights"]


@dataclass(frozen=True)
class Task:
    """One task of the network.

    Attributes
    ----------
    name : str
        Name of the head's output, its loss and its label (and the prefix of its layers).
    hidden_units : tuple of int
        Widths of the head's hidden dense layers, each followed by dropout.
    output_size : int
        Width of the head's output layer.
    activation : str or None
        Output activation (None: linear).
    loss : str
        Name of the ``keras.losses`` class of the task's loss (paper, section 3.2.3).
    weight : float
        The task's loss weight (paper: line location 10, the others 1).
    reads : {"features", "shared"}
        ``features``: the batch-normalised convolutional features, and the head's last hidden
        layer joins the shared layer; ``shared``: the shared layer.
    label : {"line_mask", "redshift_pdf", "scalar"}
        How the label is made from the catalogue (:func:`mtopnet_core.labels.task_labels`);
        a ``scalar`` label is the catalogue column ``name``, standardised with training-set statistics.
    result_column : str or None
        Catalogue column of a scalar prediction in the results.
    title : str
        Short name for messages and plots.
    in_embedding : bool
        The head's first dense layer is part of the embedding (the latent space of Fig. 13).
    """

    name: str
    hidden_units: tuple[int, ...]
    output_size: int
    activation: str | None
    loss: str
    weight: float
    reads: str
    label: str
    result_column: str | None
    title: str
    in_embedding: bool

    @property
    def embedding_layer(self) -> str:
        """Name of the head's first dense layer."""
        return f"{self.name}_dense_1"


TASKS: tuple[Task, ...] = (
    Task("line_location", (64, 128), grid.N_CHANNELS, "sigmoid", "BinaryCrossentropy", 10.0, "features",
         "line_mask", None, "line location", in_embedding=False),
    Task("redshift", (64, 128), grid.N_Z_BINS, "softmax", "CategoricalCrossentropy", 1.0, "shared",
         "redshift_pdf", None, "redshift", in_embedding=True),
    Task("log_mstar", (64, 32), 1, None, "MeanSquaredError", 1.0, "shared", "scalar", "log_mstar_pred",
         "log M*", in_embedding=True),
    Task("log_sfr", (64, 32), 1, None, "MeanSquaredError", 1.0, "shared", "scalar", "log_sfr_pred",
         "log SFR", in_embedding=True),
)
"""The tasks, in the order of the model's outputs."""

TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
SCALAR_TASKS: tuple[Task, ...] = tuple(t for t in TASKS if t.label == "scalar")
"""Tasks predicting one standardised number per spectrum (log M*, log SFR)."""
EMBEDDING_LAYERS: tuple[str, ...] = tuple(t.embedding_layer for t in TASKS if t.in_embedding)
"""First dense layer of each physical head: concatenated, the embedding of the paper's Fig. 13."""


def task(name: str) -> Task:
    """The task called ``name`` (KeyError naming the known ones otherwise)."""
    for candidate in TASKS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no task {name!r}; the tasks are {', '.join(TASK_NAMES)}")


def default_loss_weights() -> dict[str, float]:
    """The paper's loss weight of every task."""
    return {t.name: t.weight for t in TASKS}
