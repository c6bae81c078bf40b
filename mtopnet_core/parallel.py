"""Chunks of work in flight on a pool of workers, and the progress bar of every long command.

One loop serves the survey simulation (process pool), ``mtopnet predict`` (thread pool, or a Dask
cluster through its ``concurrent.futures`` executor) and anything else that works chunk by chunk:
a bounded window of chunks is in flight, so memory does not grow with the number of chunks, and
results are handed back as they finish.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["progress_bar", "run_windowed", "end_with_parent"]

Result = TypeVar("Result")


def progress_bar(total: int, *, desc: str, unit: str = "spectra", initial: int = 0, show: bool = True) -> tqdm:
    """The progress bar of a long command (a silent one with ``show`` False).

    Parameters
    ----------
    total : int
        Units of work in the whole job (spectra, or chunks).
    desc : str
        What is being done ("simulating", "predicting"...).
    unit : str
        Name of one unit.
    initial : int
        Units already done (a resumed job).
    show : bool
        Draw the bar (on standard error).
    """
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, smoothing=0.1, disable=not show)


def run_windowed(executor: Executor, function: Callable[..., Result], items: Iterable[tuple],
                 on_result: Callable[[tuple, Result], Any], *, window: int) -> None:
    """Run ``function(*item)`` for every item on ``executor``, at most ``window`` at a time.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        Where the work runs (a process or thread pool, or ``dask.distributed.Client.get_executor()``).
    function : callable
        The work on one item; must be picklable for a process pool.
    items : iterable of tuple
        The arguments of each call, read lazily (a generator keeps only the window in memory).
    on_result : callable
        Called in this process as ``on_result(item, result)``, in the order the items finish.
    window : int
        Most items submitted and not yet handed to ``on_result`` (two per worker keeps every
        worker busy while its last result is collected).

    Raises
    ------
    Exception
        The first error of ``function`` or ``on_result``, or an interrupt: the items not yet
        started are cancelled before it propagates (the caller's ``with executor`` then waits
        only for those already running).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    pending = iter(items)
    in_flight: dict[Future, tuple] = {}

    def submit_next() -> None:
        item = next(pending, None)
        if item is not None:
            in_flight[executor.submit(function, *item)] = item

    try:
        for _ in range(window):
            submit_next()
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                item = in_flight.pop(future)
                on_result(item, future.result())
                submit_next()
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise


def end_with_parent(parent: int) -> None:
    """Make this worker process end when the process that started it dies, even by ``kill -9``
    (a process pool's initializer, given ``os.getpid()`` of the parent).

    Without it a pool's idle workers outlive a killed parent: they wait on a queue whose other
    end their siblings still hold. Linux delivers SIGKILL to the worker at once
    (``PR_SET_PDEATHSIG``); elsewhere a daemon thread notices that the worker was handed to
    another parent and exits.
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
