"""Make a whole mock survey: population, then spectra chunk by chunk in parallel, into a store.

Deterministic for a seed whatever the number of workers (every spectrum's noise has its own
seed), resumable after an interruption (finished chunks are kept, unfinished ones redone), and
careful with existing output (never deletes what is not an M-TOPnet data set).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from mtopnet_core.errors import SurveyError
from mtopnet_core.jsonio import atomic_path
from mtopnet_core.parallel import progress_bar, run_windowed
from mtopnet_core.simulate.population import draw_population
from mtopnet_core.simulate.settings import SIMULATOR_VERSION, SimulationSettings
from mtopnet_core.simulate.sky import load_sky_model
from mtopnet_core.simulate.spectra import SpectrumSimulator
from mtopnet_core.store import (
    DatasetError,
    completed_chunks,
    create_dataset,
    finalize_dataset,
    read_metadata,
    write_chunk,
)

__all__ = ["simulate_survey", "exposure_mix", "SurveyError"]

logger = logging.getLogger(__name__)

_SIMULATOR: SpectrumSimulator | None = None


def _init_worker(settings: dict, ignore_interrupt: bool = False) -> None:
    global _SIMULATOR
    if ignore_interrupt:  # Ctrl-C reaches the whole process group; the main process handles it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SIMULATOR = SpectrumSimulator(SimulationSettings.from_dict(settings))


def _run_chunk(path: Path, chunk: int, chunk_size: int, rows: pd.DataFrame) -> int:
    batch = _SIMULATOR.simulate(rows)
    catalogue = rows.assign(m_h=batch.m_h)
    write_chunk(path, chunk, chunk_size, batch.flux, batch.error, batch.mask, catalogue)
    return len(rows)


def _request(n: int, seed: int, settings: SimulationSettings) -> dict:
    request = {"n_spectra": n, "seed": seed, "chunk_size": settings.chunk_size,
               "simulator_version": SIMULATOR_VERSION, "settings": settings.to_dict()}
    return json.loads(json.dumps(request))  # as read back from dataset.json (tuples -> lists)


def _prepare_output(out: Path, request: dict, overwrite: bool) -> bool:
    """Check the output folder; return True to resume an interrupted run of the same request."""
    if out.exists() and not out.is_dir():
        raise SurveyError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            meta = read_metadata(out)
        except DatasetError:
            raise SurveyError(f"{out}: folder is not empty and is not an M-TOPnet data set; "
                              "choose another output folder") from None
        same = {key: meta.get(key) for key in request} == request
        if overwrite:
            logger.info("removing the existing data set in %s (overwrite asked)", out)
            shutil.rmtree(out)
        elif meta.get("status") == "complete":
            raise SurveyError(f"{out}: already holds a complete data set; "
                              "overwrite it to replace it, or choose another folder")
        elif not same:
            raise SurveyError(f"{out}: holds an unfinished data set made with other settings "
                              f"(n={meta.get('n_spectra')}, seed={meta.get('seed')}); "
                              "overwrite it to replace it, or choose another folder")
        else:
            return True
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SurveyError(f"{out}: cannot write there ({exc.strerror})") from None
    return False


BYTES_PER_SPECTRUM = 90_000
"""Disk taken by one stored spectrum (compressed flux, error, mask and catalogue row; measured
86 kB on 256 mock spectra), for the check before a survey starts."""
MAX_SPECTRA = 10**8
"""Largest survey one command makes (the population is drawn in memory first)."""


def _check_room(out: Path, n: int) -> None:
    """Refuse, before anything is drawn or written, a survey too large for this tool or the disk."""
    if n > MAX_SPECTRA:
        raise SurveyError(f"{n} spectra is more than one survey of up to {MAX_SPECTRA} (about "
                          f"{MAX_SPECTRA * BYTES_PER_SPECTRUM / 1e12:.0f} TB); make several with other seeds")
    existing = next((p for p in (out, *out.absolute().parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    needed = n * BYTES_PER_SPECTRUM
    if needed > free:
        raise SurveyError(f"{out}: {n} spectra need about {needed / 1e9:.1f} GB and the disk has "
                          f"{free / 1e9:.1f} GB free")


def simulate_survey(
    out: str | os.PathLike,
    n: int,
    seed: int,
    settings: SimulationSettings | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Simulate ``n`` mock MOONS spectra into a data set folder.

    Parameters
    ----------
    out : str or path-like
        Output folder: new, empty, or an unfinished data set of the same request (resumed).
    n : int
        Number of spectra.
    seed : int
        Master seed; the same seed gives the same bytes whatever ``workers`` is.
    settings : SimulationSettings, optional
        Defaults to ``SimulationSettings()``.
    workers : int, optional
        Worker processes (default: the number of CPU cores); 1 runs in this process.
    overwrite : bool
        Replace an existing data set in ``out``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        The data set folder, complete.

    Raises
    ------
    SurveyError
        For bad arguments or an output folder that cannot be used.
    """
    settings = settings or SimulationSettings()
    if n <= 0:
        raise SurveyError(f"number of spectra must be positive, got {n}")
    if seed < 0:
        raise SurveyError(f"seed must be non-negative, got {seed}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise SurveyError(f"worker processes must be at least 1, got {workers}")
    out = Path(out)
    _check_room(out, n)
    request = _request(n, seed, settings)
    resume = _prepare_output(out, request, overwrite)

    population_path = out / "population.parquet"
    size = settings.chunk_size
    n_chunks = -(-n // size)
    with _started_workers(settings, workers) if workers > 1 and n_chunks > 1 else nullcontext() as pool:
        if resume and population_path.is_file():
            population = pd.read_parquet(population_path)
        else:
            population = draw_population(n, seed, settings)
            create_dataset(out, n, settings.chunk_size,
                           {**request, "cosmology": f"FlatLambdaCDM(H0={settings.h0}, Om0={settings.omega_m})"},
                           load_sky_model().emission)
            with atomic_path(population_path) as tmp:
                population.to_parquet(tmp, index=False)

        todo = sorted(set(range(n_chunks)) - completed_chunks(out))
        if resume:
            logger.info("resuming %s: %d of %d chunks already written", out, n_chunks - len(todo), n_chunks)
        remaining = sum(min(size, n - chunk * size) for chunk in todo)
        bar = progress_bar(n, initial=n - remaining, desc="simulating", show=progress)
        try:
            if pool is None or len(todo) <= 1:
                _init_worker(settings.to_dict())
                for chunk in todo:
                    bar.update(_run_chunk(out, chunk, size, population.iloc[chunk * size:(chunk + 1) * size]))
            else:
                # on an error or interrupt, chunks not started are cancelled; unfinished chunks have no
                # catalogue part yet, so a later run redoes them
                chunks = ((out, chunk, size, population.iloc[chunk * size:(chunk + 1) * size]) for chunk in todo)
                run_windowed(pool, _run_chunk, chunks, lambda _, n_done: bar.update(n_done), window=2 * workers)
        finally:
            bar.close()
    finalize_dataset(out)
    population_path.unlink()
    logger.info("wrote %d spectra to %s", n, out)
    return out


def _started_workers(settings: SimulationSettings, workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` simulator processes, started now: their imports and set-up (~1 s each)
    overlap the population's draw (~1.3 s for 4 000 spectra) instead of following it.

    Spawned, not forked: the parent may hold Zarr's I/O thread, which must not be forked.
    """
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(settings.to_dict(), True))
    for _ in range(workers):  # each submission starts a process while none is idle
        pool.submit(os.getpid)
    return pool


def exposure_mix(text: str, sub_exposure_s: float = 300.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Parse an exposure mix such as ``"2:1,4:1,8:1"`` (hours:relative weight).

    Every exposure time must be a whole number of ``sub_exposure_s`` sub-exposures.

    Returns
    -------
    hours, weights : tuple of float

    Raises
    ------
    SurveyError
        If the text is malformed or a value is not positive.
    """
    hours, weights = [], []
    try:
        for item in text.split(","):
            h, _, w = item.partition(":")
            hours.append(float(h))
            weights.append(float(w) if w else 1.0)
    except ValueError:
        raise SurveyError(f"exposure mix {text!r}: expected HOURS:WEIGHT pairs such as 2:1,4:1,8:1") from None
    if not hours or min(hours) <= 0 or min(weights) < 0 or sum(weights) <= 0:
        raise SurveyError(f"exposure mix {text!r}: hours must be positive and weights non-negative")
    if any(not np.isclose(h * 3600 / sub_exposure_s, round(h * 3600 / sub_exposure_s)) for h in hours):
        raise SurveyError(f"exposure mix {text!r}: exposure times must be whole numbers of "
                          f"{sub_exposure_s:g} s sub-exposures")
    return tuple(hours), tuple(weights)
