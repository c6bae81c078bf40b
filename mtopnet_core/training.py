"""Training M-TOPnet on a data set (paper, section 3.2.3), streamed from the store.

- split 70/15/15 by a seeded permutation of the rows (:func:`split_rows`);
- standardisation fitted on the training split only (one preprocessing pass over it);
- the paper's learning rate: linear from 0.005 to 0.0005 over 50 epochs, then constant; at
  most 100 epochs; early stopping on the validation loss with patience 10, best weights kept;
- checkpoints every epoch (``last.keras``) and of the best epoch (``best.keras``), a per-epoch
  CSV log; running the same command again resumes from ``last.keras`` (with a larger
  ``max_epochs`` it extends a run that reached its ``max_epochs``); the best checkpoint and the
  early-stopping count go on from the run's log (:class:`ResumedEarlyStopping`);
- a new run may continue a trained model's training (``warm_start``: its weights, its
  standardisation and the schedule's next epoch), e.g. the shipped model across sessions, also
  into a network with another line head (the head's new layers start afresh);
- every spectrum is preprocessed once, into ``inputs.zarr`` in the training folder (float32,
  ~49 kB per spectrum, uncompressed: reading it back is far cheaper than the running median,
  which would otherwise cost ~40% of every epoch on a 2-core CPU);
- each batch reads its own rows from that cache (rows shuffled within stored chunks, chunks
  shuffled every epoch, so reads stay close together), so memory does not depend on the data set
  size; all training batches have the same size (the epoch's short last one is left out), so JAX
  compiles one step; ``loader_threads`` make the next batches while a step runs;
- before each validation, the batch normalisation's statistics are recomputed from the current
  weights on 2 048 training spectra ("precise BN", Wu & Johnson 2021; :class:`PreciseBatchNorm`).
  The running averages Keras keeps lag the fast-moving weights at the paper's learning rate: we
  measured them 2-9 standard deviations off the true feature means after an epoch, which made
  the validation losses jump tenfold from epoch to epoch (log M* MSE 14.8 where 0.19 was right).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import zarr

from mtopnet_core import __version__, grid
from mtopnet_core.errors import UsageError
from mtopnet_core.inference import load_trained_model
from mtopnet_core.jsonio import write_json_atomic
from mtopnet_core.labels import task_labels
from mtopnet_core.model import ModelConfig, build_model, compile_model
from mtopnet_core.parallel import progress_bar, run_windowed
from mtopnet_core.preprocessing import PreprocessingConfig, Standardiser, preprocess, preprocess_stored_rows
from mtopnet_core.store import Dataset, open_dataset
from mtopnet_core.stored_chunks import ChunkedRows
from mtopnet_core.tasks import SCALAR_TASKS

__all__ = ["TrainConfig", "split_rows", "learning_rate", "cache_inputs", "StoreBatches", "fit_standardiser",
           "PreciseBatchNorm", "ResumedEarlyStopping", "StopBeforeDeadline", "train", "export_run",
           "continuum_ceiling"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; saved with the model.

    Attributes
    ----------
    seed : int
        Seeds the split, the shuffling and the weight initialisation.
    fractions : tuple of float
        Train, validation and test fractions (paper: 0.70, 0.15, 0.15).
    batch_size : int
    max_epochs : int
        Paper: 100.
    lr_start, lr_end : float
        Learning rate at the first epoch and from ``lr_decay_epochs`` on (paper: 0.005, 0.0005).
    lr_decay_epochs : int
        Epochs of the linear decay (paper: 50).
    patience : int
        Early-stopping patience on the validation loss (paper: 10).
    """

    seed: int = 0
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    batch_size: int = 64
    max_epochs: int = 100
    lr_start: float = 0.005
    lr_end: float = 0.0005
    lr_decay_epochs: int = 50
    patience: int = 10

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return asdict(self)


def learning_rate(epoch: int, config: TrainConfig) -> float:
    """The paper's schedule: linear from ``lr_start`` to ``lr_end`` over ``lr_decay_epochs``."""
    fraction = min(epoch / config.lr_decay_epochs, 1.0)
    return config.lr_start + fraction * (config.lr_end - config.lr_start)


def split_rows(n: int, seed: int, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)) -> dict:
    """Seeded train/validation/test split of row numbers.

    Returns
    -------
    dict with ``train``, ``validation``, ``test``: sorted numpy.ndarray of int
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise UsageError(f"split fractions {fractions} must be non-negative and sum to 1")
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return {name: np.sort(part) for name, part in zip(("train", "validation", "test"), parts, strict=True)}


def cache_inputs(dataset: Dataset, path: str | os.PathLike, preprocessing: PreprocessingConfig,
                 progress: bool = True, workers: int = 1) -> zarr.Group:
    """Preprocess every spectrum of a data set once and store the result (or reuse a stored one).

    Parameters
    ----------
    dataset : Dataset
    path : str or path-like
        Zarr group to write: ``lines`` (N, 12217) float32, ``continuum`` (N, 10) float32 (not
        standardised), ``usable`` (N,) bool; rows and chunks as in the data set.
    preprocessing : PreprocessingConfig
    progress : bool
        Show a progress bar.
    workers : int
        Processes preprocessing stored chunks at once (the running median costs ~2 ms per
        spectrum and core).

    Returns
    -------
    zarr.Group
        The cache, opened read-only. A cache made with other preprocessing settings, or left
        unfinished, is rebuilt.
    """
    path = Path(path)
    settings = json.loads(json.dumps(preprocessing.to_dict()))
    if (path / "zarr.json").is_file():
        cache = zarr.open_group(path, mode="r")
        if cache.attrs.get("complete") and cache.attrs.get("preprocessing") == settings \
                and cache["lines"].shape[0] == len(dataset):
            return cache
    n, chunk = len(dataset), dataset.metadata["chunk_size"]
    cache = zarr.open_group(path, mode="w")
    lines = cache.create_array("lines", shape=(n, grid.N_CHANNELS), chunks=(chunk, grid.N_CHANNELS),
                               dtype="float32", compressors=None)
    n_points = preprocessing.n_continuum_points
    continuum = cache.create_array("continuum", shape=(n, n_points), chunks=(chunk, n_points), dtype="float32")
    usable = cache.create_array("usable", shape=(n,), chunks=(chunk,), dtype="bool")
    ranges = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    work = partial(preprocess_stored_rows, str(dataset.path), settings=preprocessing.to_dict())
    bar = progress_bar(n, desc="preprocessing", show=progress)

    def store(rows: tuple[int, int], result: tuple) -> None:
        _, chunk_lines, chunk_continuum, chunk_usable = result
        part = slice(*rows)
        lines[part], continuum[part], usable[part] = chunk_lines, chunk_continuum, chunk_usable
        bar.update(rows[1] - rows[0])

    if workers > 1:
        # spawned workers import the preprocessing module only, not a deep-learning backend (nor its GPU)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            run_windowed(pool, work, ranges, store, window=2 * workers)
    else:
        for rows in ranges:
            store(rows, work(*rows))
    bar.close()
    cache.attrs.update({"complete": True, "preprocessing": settings})
    return zarr.open_group(path, mode="r")


def _row_reader(cache: zarr.Group, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Picked rows of one cached array: read where they lie in the chunk files, or through Zarr."""
    array = cache[name]
    root = getattr(cache.store, "root", None)
    rows = ChunkedRows.open(Path(root) / cache.path / name) if root is not None else None
    return rows.take if rows is not None else (lambda picked: array.oindex[picked])


class StoreBatches(keras.utils.PyDataset):
    """Batches of (inputs, labels) for some rows of a data set, read from the preprocessed cache.

    Rows are shuffled within stored chunks and the chunks shuffled every epoch; batches are then
    cut from that order, so a batch may hold the end of one chunk and the start of the next, and
    every batch but the epoch's last holds ``batch_size`` spectra. Unusable spectra are left out
    when the batches are planned. Equal batch shapes matter under JAX, which compiles the
    training step anew for every new shape (per-chunk remainders gave ~60 shapes per epoch).
    Each batch reads only its own rows, so batches can be made in several threads at once.

    Parameters
    ----------
    cache : zarr.Group
        Preprocessed inputs from :func:`cache_inputs`.
    catalogue : pandas.DataFrame
        The data set's catalogue (labels ``z``, ``log_mstar``, ``log_sfr``), in row order.
    rows : numpy.ndarray of int
        Rows to serve (one split).
    standardiser : Standardiser
    batch_size : int
    seed : int or None
        Shuffle chunks and rows every epoch with this seed; None keeps the row order.
    drop_remainder : bool
        Leave out the epoch's last batch when it is short (training: one batch shape only).
    threads : int
        Threads making the next batches while the current one trains (one: made on demand). A
        batch's rows depend only on the epoch's plan and its index, so the training is the same
        for any number. (Keras' own workers were not: under JAX they shifted the batch order.)
    """

    def __init__(self, cache: zarr.Group, catalogue: pd.DataFrame, rows: np.ndarray, standardiser: Standardiser,
                 batch_size: int, seed: int | None = None, drop_remainder: bool = False, threads: int = 1) -> None:
        super().__init__()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="batches") if threads > 1 else None
        self._ahead, self._pending = 2 * threads, {}
        self.catalogue, self.standardiser = catalogue, standardiser
        self.batch_size, self.seed, self.epoch, self.drop_remainder = batch_size, seed, 0, drop_remainder
        self._lines, self._continuum = _row_reader(cache, "lines"), _row_reader(cache, "continuum")
        chunk = cache["lines"].chunks[0]
        rows = np.asarray(rows)
        rows = rows[np.asarray(cache["usable"][:])[rows]]
        self._by_chunk = {c: np.sort(rows[rows // chunk == c]) for c in np.unique(rows // chunk)}
        self._plan()

    def _plan(self) -> None:
        rng = None if self.seed is None else np.random.default_rng([self.seed, self.epoch])
        chunks = list(self._by_chunk)
        if rng is not None:
            chunks = list(rng.permutation(chunks))
        parts = [self._by_chunk[c] if rng is None else rng.permutation(self._by_chunk[c]) for c in chunks]
        order = np.concatenate(parts) if parts else np.zeros(0, dtype=int)
        end = len(order)
        if self.drop_remainder and end >= self.batch_size:
            end -= end % self.batch_size
        self._batches = [np.sort(order[i:i + self.batch_size]) for i in range(0, end, self.batch_size)]

    def __len__(self) -> int:
        return len(self._batches)

    def inputs_and_labels(self, rows: np.ndarray) -> tuple[dict, dict]:
        """Network inputs and labels of some usable rows (sorted, for reading in file order)."""
        x = {"spectrum": self._lines(rows)[..., None],
             "continuum": self.standardiser.continuum(self._continuum(rows))}
        return x, task_labels(self.catalogue.iloc[rows], self.standardiser)

    def __getitem__(self, index: int) -> tuple[dict, dict]:
        if self._pool is None:
            return self.inputs_and_labels(self._batches[index])
        for ahead in range(index, min(index + self._ahead, len(self._batches))):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self.inputs_and_labels, self._batches[ahead])
        batch = self._pending.pop(index).result()
        for behind in [i for i in self._pending if i < index]:  # Keras reads the first batch twice
            self._pending.pop(behind).cancel()
        return batch

    def on_epoch_end(self) -> None:
        self.epoch += 1
        for made in self._pending.values():  # batches of the last epoch's plan
            made.cancel()
        self._pending = {}
        self._plan()


class PreciseBatchNorm(keras.callbacks.Callback):
    """Set every BatchNormalization layer's statistics to their exact values on training spectra.

    Runs after the last training batch of each epoch, so that validation, checkpoints and the
    final model all use statistics of the current weights.

    Parameters
    ----------
    batches : StoreBatches
        Training batches; the first ``n_chunks`` stored chunks of its rows are used.
    n_chunks : int
        Stored chunks (of 256 spectra) to compute the statistics on.
    """

    def __init__(self, batches: StoreBatches, n_chunks: int = 8) -> None:
        super().__init__()
        rows = np.concatenate([batches._by_chunk[c] for c in sorted(batches._by_chunk)[:n_chunks]])
        self.inputs = batches.inputs_and_labels(rows)[0]
        self._probes: list | None = None

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self._probes = None

    def recalibrate(self) -> None:
        """Recompute the statistics with the model's current weights."""
        # reading self.model is what puts the training state back into the variables under JAX
        model = self.model
        if self._probes is None:
            # built once: each new probe model would be compiled again (seconds per epoch under JAX)
            self._probes = [(layer, keras.Model(model.inputs, layer.input)) for layer in model.layers
                            if isinstance(layer, keras.layers.BatchNormalization)]
        for layer, probe in self._probes:
            values = probe.predict(self.inputs, batch_size=256, verbose=0)
            axes = tuple(range(values.ndim - 1))
            layer.moving_mean.assign(values.mean(axis=axes))
            layer.moving_variance.assign(values.var(axis=axes))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # with several steps per execution the last call's batch number may pass the last step
        if batch >= self.params["steps"] - 1:
            self.recalibrate()


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping that continues a resumed run's count instead of starting afresh.

    Parameters
    ----------
    best : float or None
        The run's best validation loss so far (None for a new run).
    since_best : int
        Epochs run since that best one.
    **kwargs
        Passed to :class:`keras.callbacks.EarlyStopping`.
    """

    def __init__(self, best: float | None, since_best: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._resumed = (best, since_best)

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        best, since_best = self._resumed
        if best is not None:
            self.best, self.wait = best, since_best


def fit_standardiser(cache: zarr.Group, catalogue: pd.DataFrame, rows: np.ndarray) -> Standardiser:
    """Standardisation statistics of the continuum and labels of ``rows`` (the training split).

    Parameters
    ----------
    cache : zarr.Group
        Preprocessed inputs from :func:`cache_inputs`.
    catalogue : pandas.DataFrame
    rows : numpy.ndarray of int
    """
    rows = np.sort(rows)
    kept = rows[cache["usable"][:][rows]]
    continua = cache["continuum"].get_orthogonal_selection((kept, slice(None)))
    return Standardiser.fit(continua, catalogue.iloc[kept])


def continuum_ceiling(cache: zarr.Group, rows: np.ndarray) -> list[float]:
    """The brightest continuum among the usable spectra of ``rows``, per point of the continuum vector.

    The continuum enters the network as linear flux: a galaxy brighter than every training
    spectrum is outside what the network learnt (an m_H 18.4 galaxy got log M* 17.5 from model
    v6, trained on m_H >= 19), and is flagged (:func:`mtopnet_core.inference.domain_flags`).

    Parameters
    ----------
    cache : zarr.Group
        Preprocessed inputs from :func:`cache_inputs`.
    rows : numpy.ndarray of int
        The training split.

    Returns
    -------
    list of float
        Length 10, 1e-17 erg/s/cm^2/A.
    """
    rows = np.sort(rows)
    kept = rows[cache["usable"][:][rows]]
    return [float(v) for v in cache["continuum"].get_orthogonal_selection((kept, slice(None))).max(axis=0)]


def _record_continuum_ceiling(meta: dict, cache: zarr.Group, rows: np.ndarray) -> bool:
    """Add :func:`continuum_ceiling` to a run's domain where it lacks it (runs begun before it was
    recorded); returns whether it was added."""
    if "continuum_max" in meta["domain"]:
        return False
    meta["domain"]["continuum_max"] = continuum_ceiling(cache, rows)
    return True


DOMAIN_SAMPLE = 512
"""Training spectra preprocessed to find the least coverage the model was trained on."""


def training_domain(dataset: Dataset, rows: np.ndarray, preprocessing: PreprocessingConfig) -> dict:
    """What a model trained on ``rows`` has seen: least coverage and label ranges.

    Predictions outside it are flagged (:func:`mtopnet_core.inference.domain_flags`).

    Parameters
    ----------
    dataset : Dataset
    rows : numpy.ndarray of int
        The training split.
    preprocessing : PreprocessingConfig

    Returns
    -------
    dict
        ``coverage_min`` (fraction of the grid, over up to :data:`DOMAIN_SAMPLE` spectra of
        ``rows``), ``log_mstar`` and ``log_sfr`` ([min, max] over ``rows``, dex), ``source``.
    """
    rows = np.sort(rows)
    sample = rows[np.linspace(0, len(rows) - 1, min(DOMAIN_SAMPLE, len(rows))).astype(int)]
    pre = preprocess(dataset.spectra(sample), preprocessing)
    catalogue = dataset.catalogue.iloc[rows]
    ranges = {t.name: [float(catalogue[t.name].min()), float(catalogue[t.name].max())] for t in SCALAR_TASKS}
    return {"coverage_min": float(pre.coverage[pre.usable].min()) if pre.usable.any() else 0.0, **ranges,
            "source": f"training split of {dataset.path.name} ({len(rows)} spectra; coverage over {len(sample)})"}


def _metadata(dataset: Dataset, split: dict, config: TrainConfig, model_config: ModelConfig,
              preprocessing: PreprocessingConfig, standardiser: Standardiser) -> dict:
    return {
        "domain": training_domain(dataset, split["train"], preprocessing),
        "format": "mtopnet-model", "format_version": 1, "code_version": __version__,
        "grid_fingerprint": grid.grid_fingerprint(), "n_channels": grid.N_CHANNELS,
        "redshift_bins": {"z_min": grid.Z_MIN, "width": grid.Z_BIN_WIDTH, "n": grid.N_Z_BINS},
        "preprocessing": preprocessing.to_dict(), "standardiser": standardiser.to_dict(),
        "model": model_config.to_dict(), "training": config.to_dict(),
        "data": {"path": str(dataset.path), "seed": dataset.metadata.get("seed"),
                 "n_spectra": len(dataset), **{f"n_{k}": int(len(v)) for k, v in split.items()}},
    }


def _warm_start_source(path: str | os.PathLike, dataset: Dataset, config: TrainConfig,
                       model_config: ModelConfig, preprocessing: PreprocessingConfig):
    """The trained model a run continues from, checked to be that run's continuation."""
    source = load_trained_model(path)
    meta, data = source.metadata, source.metadata.get("data", {})
    # the same network and inputs, and either the same data set and split or another draw of
    # the survey (another seed: none of its galaxies were in the source's training rows);
    # anything else would mix the source's training rows into the new validation rows, or
    # feed the network inputs it never learned
    same_seed = data.get("seed") == dataset.metadata.get("seed")
    problems = [what for what, same in (
        ("network", ModelConfig.from_dict(meta.get("model", {})).same_trunk(model_config)),
        ("preprocessing", meta.get("preprocessing") == json.loads(json.dumps(preprocessing.to_dict()))),
        ("data set (same seed, other size)", not same_seed or data.get("n_spectra") == len(dataset)),
        ("split seed", not same_seed or meta.get("training", {}).get("seed") == config.seed)) if not same]
    if problems:
        raise UsageError(f"{path}: cannot warm-start from it, its {', '.join(problems)} differ(s) from this run's")
    if "history" not in meta:
        raise UsageError(f"{path}: no training history in model.json (how many epochs it had)")
    return source


def _copy_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy every layer's weights from ``source`` to the layer of the same name and shapes in ``target``.

    Returns
    -------
    list of str
        The target's layers with weights that had no such counterpart (they keep their initial values).
    """
    fresh = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            weights = None
        if weights is not None and [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
        else:
            fresh.append(layer.name)
    return fresh


class StopBeforeDeadline(keras.callbacks.Callback):
    """Stop training after the epoch that leaves too little time for another one.

    Parameters
    ----------
    deadline : float
        ``time.time()`` by which training must be over (the run's last checkpoint is kept).
    """

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline
        self._started = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.time() + (time.time() - self._started) > self.deadline:
            logger.info("stopping after epoch %d: another one would end past the deadline", epoch)
            self.model.stop_training = True


def train(data: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None,
          model_config: ModelConfig | None = None, preprocessing: PreprocessingConfig | None = None,
          verbose: int = 2, warm_start: str | os.PathLike | None = None, workers: int = 1,
          deadline: float | None = None, loader_threads: int = 1, steps_per_execution: int = 1) -> Path:
    """Train (or resume training) M-TOPnet on a data set.

    Parameters
    ----------
    data : str or path-like
        Data set folder.
    out : str or path-like
        Training folder: ``model.json`` (metadata), ``split.npz``, ``last.keras``, ``best.keras``,
        ``history.csv``; at the end ``model.keras`` holds the best weights.
    config, model_config, preprocessing : optional
        Settings; on resume they must match those recorded in ``out``.
    verbose : int
        Keras verbosity: 1 progress bar, 2 one line per epoch.
    warm_start : path-like, optional
        A trained model folder (e.g. the shipped model) whose training this run continues: its
        weights and standardisation, and the learning-rate schedule from the epoch after its
        last (the optimizer's state is not kept in shipped models, so Adam starts afresh). It
        must come from the same network (its line head may differ: the layers that do not match
        start afresh) and preprocessing, and either the same data set and split seed or a data
        set simulated with another seed (more spectra of the survey: none of the source's
        training galaxies can then be among this run's validation rows; the source's data
        set is recorded under ``warm_start``). Used when the run folder is new; a resumed run
        continues from its own checkpoint.
    workers : int
        Processes for the one-off preprocessing of the data set.
    deadline : float, optional
        ``time.time()`` after which no new epoch starts (on a machine lent for a fixed time).
    loader_threads : int
        Threads making batches ahead of the training step (:class:`StoreBatches`).
    steps_per_execution : int
        Training steps Keras runs between two rounds of batch callbacks. On a GPU each round
        waits for the device (a NaN check reads the loss), so several steps per round let the
        host prepare batches while the device computes. The steps, and so the weights, are the
        same for any value; not part of the run's settings.

    Raises
    ------
    ValueError
        The folder holds a run with other settings, or the warm-start model does not match.

    Returns
    -------
    pathlib.Path
        Path of ``model.keras``.
    """
    config = config or TrainConfig()
    model_config = model_config or ModelConfig()
    preprocessing = preprocessing or PreprocessingConfig()
    dataset = open_dataset(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path, last_path = out / "model.json", out / "last.keras"
    cache = cache_inputs(dataset, out / "inputs.zarr", preprocessing, progress=verbose > 0, workers=workers)
    catalogue = dataset.catalogue

    source = None  # the warm-start model, loaded once
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        # everything but max_epochs must match: a run may be extended, not changed
        expected = {"model": model_config.to_dict(), "preprocessing": preprocessing.to_dict(),
                    "training": {**config.to_dict(), "max_epochs": meta["training"]["max_epochs"]}}
        # a run recorded before the line head was a setting has the paper's
        recorded = {**{k: meta[k] for k in expected}, "model": ModelConfig.from_dict(meta["model"]).to_dict()}
        if json.loads(json.dumps(expected)) != json.loads(json.dumps(recorded)):
            raise UsageError(f"{out}: holds a training run with other settings; choose another folder")
        split = dict(np.load(out / "split.npz"))
        standardiser = Standardiser.from_dict(meta["standardiser"])
    else:
        split = split_rows(len(dataset), config.seed, config.fractions)
        if warm_start is not None:
            source = _warm_start_source(warm_start, dataset, config, model_config, preprocessing)
            standardiser = source.standardiser
        else:
            logger.info("fitting the standardisation on %d training spectra", len(split["train"]))
            standardiser = fit_standardiser(cache, catalogue, split["train"])
        np.savez(out / "split.npz", **split)
        meta = _metadata(dataset, split, config, model_config, preprocessing, standardiser)
        if warm_start is not None:
            meta["warm_start"] = {"model": str(Path(warm_start).resolve()), "version": source.version,
                                  "epochs": int(source.metadata["history"]["epochs"]),
                                  "data": source.metadata.get("data", {})}
            if meta["warm_start"]["data"].get("seed") != dataset.metadata.get("seed"):
                logger.info("warm start on another draw of the survey (seed %s; the source's: %s)",
                            dataset.metadata.get("seed"), meta["warm_start"]["data"].get("seed"))
        write_json_atomic(meta_path, meta)
    meta["training"]["max_epochs"] = config.max_epochs

    keras.utils.set_random_seed(config.seed)
    initial_epoch, best_so_far, since_best = 0, None, 0
    if last_path.is_file():
        model = keras.saving.load_model(last_path)
        history = pd.read_csv(out / "history.csv")
        initial_epoch = int(history["epoch"].max()) + 1
        # the checkpoint of the best epoch and early stopping go on from the run's own record:
        # afresh, the first epoch after a restart replaced best.keras however bad it was
        best_so_far = float(history["val_loss"].min())
        since_best = initial_epoch - 1 - int(history.loc[history["val_loss"].idxmin(), "epoch"])
        logger.info("resuming from epoch %d (best validation loss %.4f, %d epochs ago)", initial_epoch,
                    best_so_far, since_best)
    else:
        model = compile_model(build_model(model_config, config.batch_size), model_config, config.lr_start)
        if "warm_start" in meta:
            source = source or _warm_start_source(meta["warm_start"]["model"], dataset, config, model_config,
                                                  preprocessing)
            fresh = _copy_weights(source.model, model)
            if fresh:
                logger.info("warm start: %s start afresh (the source's line head differs)", ", ".join(fresh))
            initial_epoch = meta["warm_start"]["epochs"]
            if initial_epoch >= config.max_epochs:
                raise UsageError(f"max_epochs {config.max_epochs}: the warm-start model has had {initial_epoch} "
                                 "epochs already; ask for more")
            logger.info("continuing %s from epoch %d", source.version, initial_epoch)

    if _record_continuum_ceiling(meta, cache, split["train"]):
        write_json_atomic(meta_path, meta)

    train_batches = StoreBatches(cache, catalogue, split["train"], standardiser, config.batch_size, config.seed,
                                 drop_remainder=True, threads=loader_threads)
    val_batches = StoreBatches(cache, catalogue, split["validation"], standardiser, config.batch_size,
                               threads=loader_threads)
    model.steps_per_execution = steps_per_execution  # a loaded checkpoint has the compile-time value
    early_stopping = ResumedEarlyStopping(best_so_far, since_best, monitor="val_loss", patience=config.patience)
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate(epoch, config)),
        PreciseBatchNorm(train_batches),
        keras.callbacks.ModelCheckpoint(last_path),
        keras.callbacks.ModelCheckpoint(out / "best.keras", monitor="val_loss", save_best_only=True,
                                        initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(out / "history.csv", append=initial_epoch > 0),
        early_stopping,
        keras.callbacks.TerminateOnNaN(),
    ] + ([StopBeforeDeadline(deadline)] if deadline is not None else [])
    if initial_epoch < config.max_epochs:
        # the batches shuffle themselves, seeded; fit's shuffling would be unseeded
        model.fit(train_batches, validation_data=val_batches, epochs=config.max_epochs, shuffle=False,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose)
    best = keras.saving.load_model(out / "best.keras") if (out / "best.keras").is_file() else model
    final = out / "model.keras"
    best.save(final)
    history = pd.read_csv(out / "history.csv")
    # epochs of the whole schedule (a warm-started run's log starts after its source's epochs)
    epochs = int(history["epoch"].max()) + 1
    meta["history"] = {"epochs": epochs, "best_val_loss": float(history["val_loss"].min()),
                       "best_epoch": int(history.loc[history["val_loss"].idxmin(), "epoch"]),
                       # ended by early stopping or the schedule, not by a deadline or a NaN loss
                       "finished": bool(epochs >= config.max_epochs or early_stopping.stopped_epoch > 0)}
    write_json_atomic(meta_path, meta)
    logger.info("best validation loss %.4f at epoch %d", meta["history"]["best_val_loss"],
                meta["history"]["best_epoch"])
    return final


def export_run(run: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A training run's best network as a model folder: weights only, and its training history.

    Parameters
    ----------
    run : path
        A ``mtopnet train`` folder: ``model.keras`` when the run has finished, else ``best.keras``.
    out : path
        Model folder to write (``model.keras`` rebuilt without optimizer state, ~8.6 MB instead
        of ~26 MB, and ``model.json`` with a ``history`` entry; its ``finished`` says whether the
        run had ended, by early stopping or at ``max_epochs``, or was taken while still training).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    run, out = Path(run), Path(out)
    meta = json.loads((run / "model.json").read_text())
    if "continuum_max" not in meta["domain"]:  # opened only for a run begun before it was recorded
        _record_continuum_ceiling(meta, zarr.open_group(run / "inputs.zarr", mode="r"),
                                  np.load(run / "split.npz")["train"])
    checkpoint = run / "model.keras" if (run / "model.keras").is_file() else run / "best.keras"
    trained = keras.saving.load_model(checkpoint)
    plain = build_model(ModelConfig.from_dict(meta["model"]), meta["training"]["batch_size"])
    plain.set_weights(trained.get_weights())
    # runs logged before "finished" was recorded only ever ended by early stopping or the schedule
    run_finished = meta.get("history", {}).get("finished", True)
    history = pd.read_csv(run / "history.csv")
    best = history.loc[history["val_loss"].idxmin()]
    meta["history"] = {"epochs": int(history["epoch"].max()) + 1, "best_epoch": int(best["epoch"]),
                       "best_val_loss": float(best["val_loss"]),
                       "best_val_losses": {k: float(best[k]) for k in history.columns if k.startswith("val_")},
                       "checkpoint": checkpoint.name, "finished": checkpoint.name == "model.keras" and run_finished}
    out.mkdir(parents=True, exist_ok=True)
    plain.save(out / "model.keras")
    write_json_atomic(out / "model.json", meta)
    return out
