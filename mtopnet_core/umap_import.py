"""umap-learn, quick to load in a new process: the app's first map waits for it.

On a fresh install ``import umap`` took 13.6 s of one core (pynndescent compiles ~40 numba
kernels for NN-descent when it is imported) and every new process compiled umap-learn's own
kernels for a first fit (4.5 s), holding the interpreter lock beside the app's prediction
threads (BENCHMARKS.md, session 32). Here pynndescent is loaded only when umap-learn's own
neighbour search needs it, which a fit given its neighbours never does, and umap-learn's
kernels are kept in numba's on-disk cache.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import types
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["import_umap", "neighbours_given"]

logger = logging.getLogger(__name__)

_import_lock = threading.Lock()
_neighbours_given = threading.local()
"""``active`` while a fit with precomputed neighbours runs on the thread (:func:`neighbours_given`)."""


class _LoadedOnly(type):
    """``isinstance`` against pynndescent's own NNDescent, once it is loaded."""

    def __instancecheck__(cls, instance) -> bool:
        # nothing is an NNDescent while pynndescent is not loaded
        loaded = getattr(sys.modules.get("pynndescent"), "NNDescent", cls)
        return loaded is not cls and isinstance(instance, loaded)


class _NNDescentOnUse(metaclass=_LoadedOnly):
    """pynndescent's NNDescent, imported when umap-learn first builds one (never with neighbours given)."""

    def __new__(cls, *args, **kwargs):
        from pynndescent import NNDescent

        return NNDescent(*args, **kwargs)


class _TableOnUse(Mapping):
    """One of pynndescent's distance tables, imported when first read.

    To fits given their neighbours it reads as empty (:func:`neighbours_given`): umap-learn only
    asks whether the metric is in it, to name the metric of a neighbour search that they skip.
    """

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name

    def _table(self) -> Mapping:
        if getattr(_neighbours_given, "active", False):
            return {}
        return getattr(importlib.import_module(self._module), self._name)

    def __getitem__(self, key):
        return self._table()[key]

    def __iter__(self):
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


def _pynndescent_stand_ins() -> dict[str, types.ModuleType]:
    """Modules that give umap-learn's import the three names it takes from pynndescent, each loading
    the real one when it is first used (by umap-learn's own neighbour search, never with neighbours given).

    pynndescent compiles ~40 numba kernels when it is imported (13.6 s of one core on a fresh
    install, 1.4 s from numba's cache, holding the interpreter lock; AMD EPYC, AVX-512), all for
    NN-descent, which :mod:`mtopnet_core.embedding` replaces by an exact search.
    """
    package = types.ModuleType("pynndescent")
    package.NNDescent = _NNDescentOnUse
    package.distances = types.ModuleType("pynndescent.distances")
    package.distances.named_distances = _TableOnUse("pynndescent.distances", "named_distances")
    package.sparse = types.ModuleType("pynndescent.sparse")
    package.sparse.sparse_named_distances = _TableOnUse("pynndescent.sparse", "sparse_named_distances")
    return {"pynndescent": package, "pynndescent.distances": package.distances,
            "pynndescent.sparse": package.sparse}


def _import_with(stand_ins: dict[str, types.ModuleType | None]):
    """Import umap-learn with ``stand_ins`` in ``sys.modules``, removed again afterwards."""
    sys.modules.update(stand_ins)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # umap-learn's import-time warnings (numba)
            import umap
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name, 0) is module:
                del sys.modules[name]
    return umap


def _cache_compiled_kernels(umap) -> None:
    """Keep umap-learn's numba kernels in numba's on-disk cache, as ``cache=True`` would.

    umap-learn compiles them in every new process: 4.5 s of one core for a first fit, holding
    the interpreter lock, against 0.3 s to load them once cached (the same maps, bit for bit).
    """
    from numba.core.dispatcher import Dispatcher

    for module in (umap.umap_, umap.layouts, umap.utils, umap.distances, umap.spectral, umap.sparse):
        for kernel in vars(module).values():
            if isinstance(kernel, Dispatcher) and kernel.stats.cache_path is None:  # not cached yet
                kernel.enable_caching()


def import_umap():
    """umap-learn, quick to start in a new process (the app's first map waits for it).

    Imported without its ParametricUMAP, whose import loads TensorFlow (seconds; never used
    here), and with pynndescent loaded only when umap-learn's own neighbour search needs it
    (:func:`_pynndescent_stand_ins`; the real one where it is loaded already or a umap-learn of
    another release takes more from it); its kernels cached on disk.
    """
    with _import_lock:  # the warm-up thread and a first map may ask at once
        if "umap" in sys.modules:
            return sys.modules["umap"]
        stand_ins: dict[str, types.ModuleType | None] = {"umap.parametric_umap": None}  # skipped on ImportError
        try:
            umap = _import_with(stand_ins | ({} if "pynndescent" in sys.modules else _pynndescent_stand_ins()))
        except (ImportError, AttributeError):
            logger.info("this umap-learn takes more from pynndescent than NNDescent and two distance tables: "
                        "importing pynndescent")
            for name in [name for name in sys.modules if name == "umap" or name.startswith("umap.")]:
                del sys.modules[name]
            umap = _import_with(stand_ins)
        _cache_compiled_kernels(umap)
        return umap


@contextmanager
def neighbours_given() -> Iterator[None]:
    """While a UMAP given its nearest neighbours (``precomputed_knn``) is fitted on this thread:
    pynndescent's distance tables read as empty, so the fit does not load pynndescent."""
    _neighbours_given.active = True
    try:
        yield
    finally:
        _neighbours_given.active = False
