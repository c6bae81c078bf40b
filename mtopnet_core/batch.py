"""Batch prediction: a whole store, or FITS files, into a results folder (``mtopnet predict``).

A store is streamed one stored chunk (256 spectra) at a time, so memory does not grow with the
survey. On one machine the chunks go to one worker process per core, each running the network
on a single thread: preprocessing (a running median) and the network then share the cores
fully, faster on 2 cores than one process whose network uses both cores but waits for its own
preprocessing (BENCHMARKS.md). Local workers write their rows of the results' arrays
themselves and send back only the catalogue rows (moving the PDFs and line maps between
processes cost a tenth of the time). With ``scheduler`` set (a ``dask.distributed`` scheduler address,
or a ``Client``), the chunks are predicted by the cluster's workers, each loading the model once,
with at most two chunks per worker in flight; this process only writes the results. Every chunk runs the same
function either way (:func:`predict_rows`), so a cluster gives the same numbers as one machine.

FITS files are read and validated one by one; a file that cannot be used becomes a row with its
problem stated (and NaN predictions), never the end of the run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd

from mtopnet_core import grid
from mtopnet_core.export import ONNX_FILE
from mtopnet_core.inference import Predictions, TrainedModel, load_trained_model, predict
from mtopnet_core.parallel import progress_bar, run_windowed
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

__all__ = ["predict_rows", "predict_rows_into", "predict_store", "predict_fits", "read_fits_batch", "fits_paths"]

logger = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz")


@lru_cache(maxsize=2)
def _cached_model(path: str, threads: int | None = None) -> TrainedModel:
    # one load per process (and per Dask worker), not one per chunk
    return load_trained_model(path, threads=threads)


_WORKER_THREADS: int | None = None
"""Compute threads of this process's network: 1 in local prediction workers (one per core)."""


@lru_cache(maxsize=2)
def _cached_dataset(data: str) -> Dataset:
    # opening checks every array's chunks on disk and reads the catalogue: ~20 ms, once per process
    return open_dataset(data)


@lru_cache(maxsize=2)
def predict_rows(model_path: str, data_path: str, start: int, stop: int, mc_passes: int = 0) -> Predictions:
    """Predict rows ``start:stop`` of a store (the unit of work of :func:`predict_store`).

    Parameters
    ----------
    model_path, data_path : str
        Trained model folder and data set folder, as seen by the process that runs this.
    start, stop : int
        Row range.
    mc_passes : int
        Monte Carlo dropout passes (0: off).

    Returns
    -------
    Predictions
        With ``line_probability`` quantised to uint8 (probability x 255), as the results store it.
    """
    spectra = _cached_dataset(data_path).spectra(slice(start, stop))
    out = predict(_cached_model(model_path, _WORKER_THREADS), spectra, mc_passes=mc_passes)
    # the results store the line map as uint8 anyway; quantising here sends 4x less between processes
    out.line_probability = quantise_line_probability(out.line_probability)
    return out


def predict_rows_into(results: str, model_path: str, data_path: str, start: int, stop: int,
                      mc_passes: int = 0) -> pd.DataFrame:
    """Predict rows ``start:stop`` of a store, write their arrays into a results folder, and
    return their catalogue rows (:func:`~mtopnet_core.results.predictions_table`)."""
    predictions = predict_rows(model_path, data_path, start, stop, mc_passes)
    write_prediction_arrays(results, start, predictions)
    return predictions_table(predictions)


def _end_with_parent(parent: int) -> None:
    """Make this worker process end when the process that started it dies, even by ``kill -9``.

    Linux delivers SIGKILL to the worker at once (``PR_SET_PDEATHSIG``); elsewhere a daemon
    thread notices that the worker was handed to another parent and exits.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(1, signal.SIGKILL) == 0:  # PR_SET_PDEATHSIG
                if os.getppid() != parent:  # the parent died before the signal was set up
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl here: the watcher thread below does the job

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _single_threaded_tensorflow() -> None:
    """Import Keras (and TensorFlow, its backend here) with one compute thread each."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _single_threaded_worker(model_path: str, parent: int, mc_passes: int) -> None:
    """Initialise a prediction worker process: ends with its parent, one compute thread (as many
    workers as cores), and the model loaded while the other workers start too.

    TensorFlow is imported only where Keras runs the network: no exported network, or MC dropout
    with a model folder that has no heads for NumPy (:mod:`mtopnet_core.mc_dropout`).
    """
    global _WORKER_THREADS
    _end_with_parent(parent)
    _WORKER_THREADS = 1
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not (Path(model_path) / ONNX_FILE).is_file():
        _single_threaded_tensorflow()
    trained = _cached_model(model_path, _WORKER_THREADS)
    if mc_passes and trained.mc_heads is None:
        _single_threaded_tensorflow()
        trained.forward  # noqa: B018 -- load the Keras model now, beside the other workers' start


def _run_in_processes(workers: int, ranges: Sequence[tuple[int, int]], model: str, data: str, mc_passes: int,
                      results: str, add_table: Callable[[int, int, pd.DataFrame], None],
                      head_start: bool = False) -> None:
    """Predict ``ranges`` in ``workers`` processes, at most two chunks per worker in flight (bounded memory).

    With ``head_start``, this process predicts chunks itself until the first worker's result
    arrives: starting a worker (interpreter, imports, model) takes seconds, in which the first
    results are already written (issue 11: results within 3 s of the start).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded_worker,
                             initargs=(model, os.getpid(), mc_passes)) as pool:
        work = partial(predict_rows_into, results, model, data, mc_passes=mc_passes)
        run_windowed(pool, work, ranges, lambda rows, table: add_table(*rows, table), window=2 * workers,
                     run_here=work if head_start else None)


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
        Without a scheduler: worker processes (default: one per core; 1 runs in this process).
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
    dataset = open_dataset(data)
    trained = _cached_model(model)  # fail early, here, on a bad model
    n = len(dataset)
    chunk = dataset.metadata["chunk_size"]
    writer = ResultsWriter(out, n, {"input": {"kind": "store", "path": data, "seed": dataset.metadata.get("seed")},
                                    "mc_passes": mc_passes, **_model_metadata(trained)},
                           mc_spread=mc_passes > 0, overwrite=overwrite, chunk_rows=chunk,
                           embedding_size=trained.embedding_size)
    truth = _truth_columns(dataset.catalogue)
    ranges = [(start, stop) for start, stop in _chunks(n, chunk) if start not in writer.done]
    bar = progress_bar(n, initial=n - sum(stop - start for start, stop in ranges), desc="predicting", show=progress)

    def extra(start: int, stop: int) -> pd.DataFrame:
        source = pd.DataFrame({"row": np.arange(start, stop)})
        return pd.concat([source, truth.iloc[start:stop].reset_index(drop=True)], axis=1)

    def store(start: int, stop: int, predictions: Predictions) -> None:
        writer.write(start, predictions, extra(start, stop))
        bar.update(stop - start)

    def add_table(start: int, stop: int, table: pd.DataFrame) -> None:
        writer.add_table(start, table, extra(start, stop))
        bar.update(stop - start)

    workers = max(min(workers or os.cpu_count() or 1, len(ranges)), 1)
    # a resumed run whose chunks were all done has only its catalogue left to write
    if ranges and scheduler is not None:
        _run_on_cluster(scheduler, ranges, model, data, mc_passes, store)
    elif ranges and workers > 1:
        # the work ranges are the writer's chunks: no two workers ever write into the same chunk
        # this process holds the model already; with ONNX Runtime (no TensorFlow to import) it starts at once
        no_tensorflow = trained.runtime == "onnxruntime" and (not mc_passes or trained.mc_heads is not None)
        _run_in_processes(workers, ranges, model, data, mc_passes, str(writer.path), add_table,
                          head_start=no_tensorflow)
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


def read_fits_batch(sources: Iterable[str | os.PathLike | tuple[str, bytes]], sky: np.ndarray,
                    max_bytes: int | None = None) -> tuple[Spectra, list[str | None]]:
    """Read FITS spectra and put them on the MOONS grid.

    A file that cannot be used (unreadable, too large, not a 1D spectrum, no error array) gets a
    problem message naming it, and zero flux with every channel masked, so it is rejected
    downstream.

    Parameters
    ----------
    sources : iterable of path-like, or of (name, content) pairs
        Files, or uploads read in memory (messages then name them by ``name`` only).
    sky : numpy.ndarray, shape (12217,)
        Sky model of the observations, photons/s/cm^2/A/arcsec^2.
    max_bytes : int, optional
        Largest file, before and after decompression (:func:`~mtopnet_core.fits_io.load_fits_bytes`;
        default :data:`~mtopnet_core.fits_io.MAX_FITS_BYTES`).

    Returns
    -------
    spectra : Spectra
        Named by their object IDs (header OBJECT, else the file name).
    problems : list of (str or None)
        Why each file could not be read, or None.
    """
    # astropy only where FITS files are read: a store's prediction starts ~0.3 s sooner
    from mtopnet_core.fits_io import MAX_FITS_BYTES, read_fits_spectrum, to_moons_grid

    max_bytes = MAX_FITS_BYTES if max_bytes is None else max_bytes
    names, fluxes, errors, masks, problems = [], [], [], [], []
    for source in sources:
        label, content = (source if isinstance(source, tuple) else (str(source), source))
        problem, name = None, Path(label).name
        flux = error = np.zeros(grid.N_CHANNELS, np.float32)
        mask = np.full(grid.N_CHANNELS, 255, np.uint8)
        try:
            spectrum = read_fits_spectrum(content, name=label, max_bytes=max_bytes)
            name = spectrum.object_id
            if spectrum.error is None:
                problem = f"{label}: no error array (ERR or IVAR column); M-TOPnet needs it to mask bad channels"
            else:
                flux, error, mask = to_moons_grid(spectrum)
        except (OSError, ValueError) as exc:
            problem = str(exc)
        names.append(name)
        fluxes.append(flux)
        errors.append(error)
        masks.append(mask)
        problems.append(problem)
    shape = (len(names), grid.N_CHANNELS)
    spectra = Spectra(flux=np.reshape(fluxes, shape), sky=sky, error=np.reshape(errors, shape),
                      mask=np.reshape(masks, shape), names=names)
    return spectra, problems


def predict_fits(paths: Sequence[str | os.PathLike], out: str | os.PathLike, model: str | os.PathLike,
                 sky: np.ndarray, mc_passes: int = 0, overwrite: bool = False, progress: bool = True) -> Path:
    """Predict FITS spectra into a results folder, :data:`~mtopnet_core.results.CHUNK_ROWS` files at a time.

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
    mc_passes, overwrite, progress
        As for :func:`predict_store`.
    """
    trained = _cached_model(str(Path(model).resolve()))
    files = hashlib.sha1("\n".join(str(Path(p).resolve()) for p in paths).encode()).hexdigest()
    writer = ResultsWriter(out, len(paths), {"input": {"kind": "fits", "n_files": len(paths), "files_sha1": files},
                                             "mc_passes": mc_passes, **_model_metadata(trained)},
                           mc_spread=mc_passes > 0, overwrite=overwrite, embedding_size=trained.embedding_size)
    to_do = [(start, stop) for start, stop in _chunks(len(paths), CHUNK_ROWS) if start not in writer.done]
    bar = progress_bar(len(paths), initial=len(paths) - sum(stop - start for start, stop in to_do),
                       desc="predicting", show=progress)
    for start, stop in to_do:
        spectra, read_problems = read_fits_batch(paths[start:stop], sky)
        predictions = predict(trained, spectra, mc_passes=mc_passes)
        # a reading problem says more than the preprocessing's "0% usable" that follows from it
        predictions.problems = [r or p for r, p in zip(read_problems, predictions.problems, strict=True)]
        for problem in filter(None, predictions.problems):
            logger.warning("%s", problem)
        writer.write(start, predictions, pd.DataFrame({"file": [str(p) for p in paths[start:stop]]}))
        bar.update(stop - start)
    bar.close()
    return writer.close()
