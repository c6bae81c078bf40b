"""Batch prediction: a whole store, or FITS files, into a results folder (``mtopnet predict``).

A store is streamed one stored chunk (256 spectra) at a time, so memory does not grow with the
survey. On one machine the chunks go to one thread per core, each running the network on a
single core: preprocessing (a running median) and the network then share the cores fully,
faster on 2 cores than a network that uses both cores but waits for its own preprocessing, and
faster than worker processes, which each paid seconds for their imports, model and compiled
median (BENCHMARKS.md). The threads write the results' arrays of the chunks they predict whole;
the first and last chunks are split over them and written by the calling thread.
With ``scheduler`` set (a ``dask.distributed`` scheduler address,
or a ``Client``), the chunks are predicted by the cluster's workers, each loading the model once,
with at most two chunks per worker in flight; this process only writes the results. Every chunk runs the same
function either way (:func:`predict_rows`), so a cluster gives the same numbers as one machine.

FITS files are read and validated one by one, by the prediction threads, or by reader processes
where files read slowly or there are more than two cores (reading holds the GIL), and predicted by
the same threads as a store's chunks; a file that cannot be used becomes a row with its problem
stated (and NaN predictions), never the end of the run.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd

from mtopnet_core.inference import Predictions, TrainedModel, load_trained_model, predict
from mtopnet_core.parallel import end_with_parent, progress_bar, run_windowed
from mtopnet_core.preprocessing import SORT_MEDIAN
from mtopnet_core.results import (
    CHUNK_ROWS,
    TRUTH_COLUMNS,
    ResultsWriter,
    predictions_table,
    quantise_line_probability,
    write_prediction_arrays,
)
from mtopnet_core.spectra import Spectra
from mtopnet_core.store import Dataset, open_dataset

__all__ = ["predict_rows", "predict_store", "predict_fits", "fits_paths"]

logger = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz")


_LOADING = threading.Lock()
"""Held while a model or data set is opened: threads that ask at once open it once."""


def _stamp(path: Path) -> tuple[int, int] | None:
    """(modification time in ns, size) of a file, None if it is missing."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


@lru_cache(maxsize=4)
def _open_model(path: str, threads: int | None, stamp: tuple[int, int] | None) -> TrainedModel:
    return load_trained_model(path, threads=threads)


def _cached_model(path: str, threads: int | None = None) -> TrainedModel:
    """The model at ``path`` with ``threads`` compute threads, loaded once per process (and per
    Dask worker), not once per chunk; a local run holds two (on every core for a run in one
    thread and the check at the start, on one core for the prediction threads). Loaded again
    once its ``model.json`` is rewritten (calibrated, exported, replaced) under a long-lived
    process such as the app's server."""
    with _LOADING:
        return _open_model(path, threads, _stamp(Path(path) / "model.json"))


@lru_cache(maxsize=2)
def _open_dataset(data: str, stamp: tuple[int, int] | None) -> Dataset:
    return open_dataset(data)


def _cached_dataset(data: str) -> Dataset:
    # opening checks every array's chunks on disk and reads the catalogue: ~20 ms, once per
    # process and data set (again when its dataset.json is rewritten: simulated again in place)
    with _LOADING:
        return _open_dataset(data, _stamp(Path(data) / "dataset.json"))


def predict_rows(model_path: str, data_path: str, start: int, stop: int, mc_passes: int = 0,
                 threads: int | None = None) -> Predictions:
    """Predict rows ``start:stop`` of a store (the unit of work of :func:`predict_store`).

    Parameters
    ----------
    model_path, data_path : str
        Trained model folder and data set folder, as seen by the process that runs this.
    start, stop : int
        Row range.
    mc_passes : int
        Monte Carlo dropout passes (0: off).
    threads : int, optional
        Compute threads of the exported network (default: one per core).

    Returns
    -------
    Predictions
        With ``line_probability`` quantised to uint8 (probability x 255), as the results store it.
    """
    spectra = _cached_dataset(data_path).spectra(slice(start, stop))
    out = predict(_cached_model(model_path, threads), spectra, mc_passes=mc_passes)
    # the results store the line map as uint8 anyway; quantising here sends 4x less to a cluster's client
    out.line_probability = quantise_line_probability(out.line_probability)
    return out


def _pieces(start: int, stop: int, count: int) -> list[tuple[int, int]]:
    """Rows ``start:stop`` in ``count`` near-equal, non-empty pieces (fewer if there are fewer rows)."""
    bounds = np.linspace(start, stop, min(count, stop - start) + 1).astype(int).tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))


RowPredictor = Callable[[int, int, "int | None"], Predictions]
"""``(start, stop, threads)`` -> the predictions of rows ``start:stop`` of a job, made with the
exported network on ``threads`` compute threads (None: every core)."""


def _run_in_threads(workers: int, ranges: Sequence[tuple[int, int]], trained: TrainedModel, mc_passes: int,
                    predict_rows_of: RowPredictor, results: str,
                    add_table: Callable[[int, int, pd.DataFrame], None]) -> None:
    """Predict ``ranges`` (the results' chunks) on ``workers`` threads of this process, at most two
    pieces of work per thread in flight (bounded memory).

    Each thread runs the exported network on one core: ONNX Runtime, the running median (numba or
    bottleneck) and NumPy's loops release the GIL, so two threads predict 1.8-1.9x as fast as one,
    and no worker process pays for an interpreter, imports, a model and a compiled median of its
    own (seconds on a slow CPU; BENCHMARKS.md). A thread writes the arrays of a whole chunk it
    predicted. The first chunk and the last ``workers`` are split over the threads, and this
    thread joins and writes their pieces: the first results come as soon as the threads together
    can make them (issue 11: within 3 s of the start; two chunks at once on one core each came 0.9 s
    later on 2 AVX2 cores), without the threads waiting for each other's piece, and the threads
    end together instead of one predicting a last whole chunk alone (~0.4 s on 2 cores). Where
    Keras runs the network (no export, or MC dropout without the heads in NumPy) the threads
    share ``trained``, TensorFlow spreads each call over the cores, and the first chunk is one
    call before the others start; MC dropout's masks are drawn per chunk, so its chunks are never split.
    """
    keras = trained.runtime != "onnxruntime" or (mc_passes and trained.mc_heads is None)
    threads = None if keras else 1
    split = not keras and not mc_passes
    work_items: list[tuple[int, int, int, int]] = []  # (chunk start, chunk stop, piece start, piece stop)
    for index, (start, stop) in enumerate(ranges):
        in_pieces = split and (index == 0 or index >= len(ranges) - workers)
        work_items += [(start, stop, *piece) for piece in (_pieces(start, stop, workers) if in_pieces
                                                           else [(start, stop)])]
    pieces: dict[int, list[tuple[int, Predictions]]] = {}

    def work(chunk_start: int, chunk_stop: int, start: int, stop: int) -> pd.DataFrame | Predictions:
        predictions = predict_rows_of(start, stop, threads)
        if (start, stop) != (chunk_start, chunk_stop):
            return predictions
        write_prediction_arrays(results, start, predictions)
        return predictions_table(predictions)

    def collect(item: tuple[int, int, int, int], result: pd.DataFrame | Predictions) -> None:
        chunk_start, chunk_stop, start, stop = item
        if (start, stop) == (chunk_start, chunk_stop):
            add_table(start, stop, result)
            return
        got = pieces.setdefault(chunk_start, [])
        got.append((start, result))
        if sum(len(part.names) for _, part in got) == chunk_stop - chunk_start:
            parts = [part for _, part in sorted(got, key=lambda piece: piece[0])]
            del pieces[chunk_start]
            write_prediction_arrays(results, chunk_start, parts)  # this thread alone writes a split chunk
            add_table(chunk_start, chunk_stop, pd.concat([predictions_table(part) for part in parts],
                                                         ignore_index=True))

    with ThreadPoolExecutor(workers, thread_name_prefix="mtopnet-predict") as pool:
        if not split:  # the first chunk alone, before the others
            first = work_items.pop(0)
            collect(first, work(*first))
        run_windowed(pool, work, work_items, collect, window=2 * workers)


def _truth_columns(catalogue: pd.DataFrame) -> pd.DataFrame:
    return catalogue.drop(columns=["object_id", "seed"], errors="ignore").rename(columns=TRUTH_COLUMNS)


def _model_metadata(trained: TrainedModel) -> dict:
    meta = trained.metadata
    return {"model": {"path": str(trained.path), "version": trained.version, "code_version": meta.get("code_version"),
                      "data": meta.get("data"), "training": meta.get("training"),
                      "evaluation": meta.get("evaluation"),
                      # the entropy cut its calibration chose for MC-dropout PDFs (Results.mc_entropy_cut)
                      "mc_screening": meta.get("calibration", {}).get("mc_screening")}}


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def predict_store(data: str | os.PathLike, out: str | os.PathLike, model: str | os.PathLike,
                  mc_passes: int = 0, scheduler=None, workers: int | None = None, overwrite: bool = False,
                  progress: bool = True) -> Path:
    """Predict every spectrum of a data set into a results folder.

    Parameters
    ----------
    data : str or path-like
        Data set folder (a store).
    out : str or path-like
        Results folder to write (:mod:`mtopnet_core.results`).
    model : str or path-like
        Trained model folder.
    mc_passes : int
        Monte Carlo dropout passes (0: off).
    scheduler : str or dask.distributed.Client, optional
        Run the chunks on this Dask cluster; the data and model paths must be readable by its
        workers.
    workers : int, optional
        Without a scheduler: prediction threads, each on one core (default: one per core; 1 runs
        the network on every core in this thread).
    overwrite : bool
        Replace an existing results folder. Without it, an unfinished run of the same input
        and model in ``out`` is resumed (its finished chunks are kept).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        The results folder.
    """
    data, model = str(Path(data).resolve()), str(Path(model).resolve())
    dataset = _cached_dataset(data)
    n = len(dataset)
    chunk = dataset.metadata["chunk_size"]
    workers = workers or os.cpu_count() or 1
    # fail early, here, on a bad model; loaded as prediction threads will use it (one core each), not twice
    in_threads = scheduler is None and min(workers, -(-n // chunk)) > 1
    trained = _cached_model(model, 1 if in_threads else None)
    writer = ResultsWriter(out, n, {"input": {"kind": "store", "path": data, "seed": dataset.metadata.get("seed")},
                                    "mc_passes": mc_passes, **_model_metadata(trained)},
                           mc_spread=mc_passes > 0, overwrite=overwrite, chunk_rows=chunk,
                           embedding_size=trained.embedding_size)
    truth = _truth_columns(dataset.catalogue)
    ranges = [(start, stop) for start, stop in _chunks(n, chunk) if start not in writer.done]
    todo = sum(stop - start for start, stop in ranges)
    bar = progress_bar(n, initial=n - todo, desc="predicting", show=progress)

    def extra(start: int, stop: int) -> pd.DataFrame:
        source = pd.DataFrame({"row": np.arange(start, stop)})
        return pd.concat([source, truth.iloc[start:stop].reset_index(drop=True)], axis=1)

    def store(start: int, stop: int, predictions: Predictions) -> None:
        writer.write(start, predictions, extra(start, stop))
        bar.update(stop - start)

    def add_table(start: int, stop: int, table: pd.DataFrame) -> None:
        writer.add_table(start, table, extra(start, stop))
        bar.update(stop - start)

    workers = max(min(workers, len(ranges)), 1)
    if scheduler is None:
        SORT_MEDIAN.expect(todo)
    # a resumed run whose chunks were all done has only its catalogue left to write
    if ranges and scheduler is not None:
        _run_on_cluster(scheduler, ranges, model, data, mc_passes, store)
    elif ranges and workers > 1:
        # the work ranges are the writer's chunks: no two threads ever write into the same chunk
        _run_in_threads(workers, ranges, trained, mc_passes,
                        lambda start, stop, threads: predict_rows(model, data, start, stop, mc_passes, threads),
                        str(writer.path), add_table)
    else:
        for start, stop in ranges:
            store(start, stop, predict_rows(model, data, start, stop, mc_passes))
    bar.close()
    logger.info("predicted %d spectra (%d could not be processed) into %s", n, writer.n_not_processed, out)
    return writer.close()


def _run_on_cluster(scheduler, ranges: Sequence[tuple[int, int]], model: str, data: str, mc_passes: int,
                    store: Callable[[int, int, Predictions], None]) -> None:
    from dask.distributed import Client

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
        run_windowed(client.get_executor(pure=False), partial(predict_rows, model, data, mc_passes=mc_passes),
                     ranges, lambda rows, predictions: store(*rows, predictions), window=2 * n_workers)
    finally:
        if client is not scheduler:
            client.close()


def fits_paths(path: str | os.PathLike) -> list[Path]:
    """The FITS files named by ``path``: the file itself, or the FITS files in a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES))
    return [path]


class _ReadAhead:
    """The spectra of a job's chunks, each read once by ``read`` (which hands back a future: a
    reader process's, or a finished one) as soon as a chunk ``ahead`` or fewer places before it is
    asked for, and kept until :meth:`drop` (memory bounded by ``ahead``)."""

    def __init__(self, chunks: Sequence[tuple[int, int]], read: Callable[[int, int], Future], ahead: int) -> None:
        self._chunks = list(chunks)
        self._starts = [start for start, _ in self._chunks]
        self._read = read
        self._ahead = ahead
        self._asked = 0  # chunks whose reading has been started
        self._reads: dict[int, Future] = {}
        self._lock = threading.Lock()

    def rows(self, start: int, stop: int) -> tuple[Spectra, list[str | None]]:
        """Rows ``start:stop`` (of one chunk) and why each could not be read (None: read)."""
        index = bisect.bisect_right(self._starts, start) - 1
        with self._lock:
            self._ask_up_to(index + self._ahead)
            read = self._reads[self._starts[index]]
        spectra, problems = read.result()
        chunk_start, chunk_stop = self._chunks[index]
        if (start, stop) == (chunk_start, chunk_stop):
            return spectra, problems
        piece = slice(start - chunk_start, stop - chunk_start)
        return spectra[piece], problems[piece]

    def start(self) -> None:
        """Start reading the first chunks, before any is asked for."""
        with self._lock:
            self._ask_up_to(self._ahead)

    def _ask_up_to(self, index: int) -> None:
        while self._asked < len(self._chunks) and self._asked <= index:
            self._reads[self._starts[self._asked]] = self._read(*self._chunks[self._asked])
            self._asked += 1

    def drop(self, start: int) -> None:
        """Forget the chunk that starts at ``start`` (its predictions are written)."""
        with self._lock:
            self._reads.pop(start, None)


SLOW_READ_SECONDS = 0.003
"""FITS files read slower than this (seconds a file, the first chunk's in this process) are read by
reader processes, as they are on more than two cores: reading holds the GIL, so prediction threads
reading them would wait for each other once a file takes about as long to read as to predict on one
core (1.5-5 ms on the CPUs measured; astropy's HDU objects read a file in 3.5-11 ms). Faster ones,
plain tables (~0.7 ms), are read by the prediction threads themselves: on two cores 1.1x-1.3x as
fast as reader processes, which pay their start-up (~0.5 s of a core each) and send the spectra
back (BENCHMARKS.md)."""


def _finished(value) -> Future:
    """A future that holds ``value`` already."""
    future: Future = Future()
    future.set_result(value)
    return future


def predict_fits(paths: Sequence[str | os.PathLike], out: str | os.PathLike, model: str | os.PathLike,
                 sky: np.ndarray, mc_passes: int = 0, workers: int | None = None, overwrite: bool = False,
                 progress: bool = True) -> Path:
    """Predict FITS spectra into a results folder, :data:`~mtopnet_core.results.CHUNK_ROWS` files at a time.

    Reading a file holds the GIL and takes ~0.7 ms of a core for a plain table (read by NumPy,
    :mod:`mtopnet_core.fits_tables`, its layout worked out once per table header), ~11 ms for other
    layouts (astropy's HDU objects). The first chunk is read here; where it read slowly
    (:data:`SLOW_READ_SECONDS`) or there are more than two workers, ``workers`` reader processes
    read the others, at most two chunks each ahead of the prediction, else the prediction threads
    read each chunk as they come to it. The chunks are predicted as a store's are
    (:func:`predict_store`): on ``workers`` threads of this process, each running the network on
    one core, the first and last chunks split over them.

    Parameters
    ----------
    paths : sequence of path-like
        ESO Phase 3 1D spectra (:mod:`mtopnet_core.fits_io`).
    out : str or path-like
        Results folder.
    model : str or path-like
        Trained model folder.
    sky : numpy.ndarray, shape (12217,)
        Sky model for the channel mask.
    mc_passes : int
        As for :func:`predict_store`.
    workers : int, optional
        Prediction threads, and reader processes where they are used (default: one per core; 1
        reads and predicts in this thread, with the network on every core).
    overwrite, progress
        As for :func:`predict_store`.
    """
    from mtopnet_core.fits_io import read_fits_rows  # astropy where FITS files are read, not for a store

    model = str(Path(model).resolve())
    names = [str(path) for path in paths]
    chunks = _chunks(len(names), CHUNK_ROWS)
    workers = workers or os.cpu_count() or 1
    in_threads = min(workers, len(chunks)) > 1
    trained = _cached_model(model, 1 if in_threads else None)
    files = hashlib.sha1("\n".join(str(Path(name).resolve()) for name in names).encode()).hexdigest()
    writer = ResultsWriter(out, len(names), {"input": {"kind": "fits", "n_files": len(names), "files_sha1": files},
                                             "mc_passes": mc_passes, **_model_metadata(trained)},
                           mc_spread=mc_passes > 0, overwrite=overwrite, chunk_rows=CHUNK_ROWS,
                           embedding_size=trained.embedding_size)
    ranges = [(start, stop) for start, stop in chunks if start not in writer.done]
    todo = sum(stop - start for start, stop in ranges)
    bar = progress_bar(len(names), initial=len(names) - todo, desc="predicting", show=progress)
    SORT_MEDIAN.expect(todo)

    workers = max(min(workers, len(ranges)), 1)
    pool, readers = None, 0
    first: tuple[Spectra, list[str | None]] | None = None
    if ranges:
        first_start, first_stop = ranges[0]
        began = time.perf_counter()
        first = read_fits_rows(first_start, first_stop, names[first_start:first_stop], sky=sky)
        slow = (time.perf_counter() - began) / (first_stop - first_start) > SLOW_READ_SECONDS
        readers = min(workers, len(ranges) - 1)
        if readers > 1 and (slow or workers > 2):
            pool = ProcessPoolExecutor(readers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=end_with_parent, initargs=(os.getpid(),))

    def read(start: int, stop: int) -> Future:
        if start == ranges[0][0]:
            return _finished(first)
        if pool is None:  # in the prediction thread that asks for it
            return _finished(read_fits_rows(start, stop, names[start:stop], sky=sky))
        return pool.submit(read_fits_rows, start, stop, names[start:stop], sky=sky)

    reads = _ReadAhead(ranges, read, ahead=2 * readers if pool else 0)

    def predict_files(start: int, stop: int, threads: int | None) -> Predictions:
        spectra, read_problems = reads.rows(start, stop)
        predictions = predict(_cached_model(model, threads), spectra, mc_passes=mc_passes)
        # a reading problem says more than the preprocessing's "0% usable" that follows from it
        predictions.problems = [r or p for r, p in zip(read_problems, predictions.problems, strict=True)]
        for problem in filter(None, predictions.problems):
            logger.warning("%s", problem)
        return predictions

    def add_table(start: int, stop: int, table: pd.DataFrame) -> None:
        reads.drop(start)
        writer.add_table(start, table, pd.DataFrame({"file": names[start:stop]}))
        bar.update(stop - start)

    try:
        if pool is not None:
            reads.start()
        if workers > 1:
            _run_in_threads(workers, ranges, trained, mc_passes, predict_files, str(writer.path), add_table)
        else:
            for start, stop in ranges:
                predictions = predict_files(start, stop, None)
                write_prediction_arrays(writer.path, start, predictions)
                add_table(start, stop, predictions_table(predictions))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    bar.close()
    return writer.close()
