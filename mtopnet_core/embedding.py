"""The latent-space map (paper, section 5 and Fig. 13): UMAP of the 192-d embedding to 2-D.

The map is fitted once on a results set, with a seed so that it is reproducible, and kept as
data: the 2-D coordinates of every object (the catalogue's ``umap_x``, ``umap_y``, or a Parquet
file of object IDs and coordinates). Nothing is pickled: a fitted UMAP object saved with
joblib or pickle runs code when it is loaded, and results folders travel between people and
reach the app's page. New spectra are placed in a map by their nearest neighbours in the
embedding (:func:`place_in_map`), the same start UMAP's own ``transform`` refines, from the
stored coordinates and the results' stored embedding.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mtopnet_core.errors import UsageError
from mtopnet_core.jsonio import atomic_path
from mtopnet_core.umap_import import import_umap, neighbours_given

__all__ = ["fit_embedding_map", "warm_up_umap", "place_in_map", "ensure_embedding_map", "map_coordinates",
           "stored_map", "save_map", "read_map", "MAP_FILE", "MAP_COLUMNS"]

logger = logging.getLogger(__name__)

MAP_FILE = "embedding_map.parquet"
"""A map kept apart from its results (in the app's data folder): object_id, umap_x, umap_y."""
MAP_COLUMNS = ("umap_x", "umap_y")
PLACEMENT_NEIGHBOURS = 15
"""Neighbours in the embedding that place a new spectrum (UMAP's default n_neighbors)."""


def _fit_umap(vectors: np.ndarray, seed: int, n_neighbors: int, min_dist: float) -> np.ndarray:
    """Fit a 2-D UMAP to ``vectors`` (all finite), given their exact nearest neighbours; the map's coordinates.

    umap-learn finds them itself by calling a Python distance function per pair below 4 096
    points (16 M calls for the 4 000-object demo, ~11 s) and by NN-descent above, whose numba
    compilation takes ~30 s in every new process. scikit-learn's exact search takes 0.1 s
    (4 000) to 2 s (20 000), so a first map costs seconds, not most of a minute (BENCHMARKS.md).
    """
    from sklearn.neighbors import NearestNeighbors

    umap = import_umap()
    distances, indices = NearestNeighbors(n_neighbors=n_neighbors).fit(vectors).kneighbors(vectors)
    # one job, which a seed implies anyway (umap-learn warns when it has to override more)
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_jobs=1,
                        transform_seed=seed, precomputed_knn=(indices, distances.astype(np.float32), None))
    with neighbours_given(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no transform with precomputed neighbours": place_in_map does that
        return reducer.fit_transform(vectors)


_warm_up: list[threading.Thread] = []  # the process's one warm-up
_warm_up_lock = threading.Lock()


def warm_up_umap() -> threading.Thread:
    """Import umap-learn and compile its numba kernels, in a background thread started once per
    process; returns the thread.

    A first map in a process pays for umap-learn's import and kernels (:mod:`mtopnet_core.umap_import`:
    ~0.6 s once they are in numba's cache, 4.5 s of one core to compile them on a fresh install;
    AMD EPYC, AVX-512), against ~4 s for fitting 4 000 points; started beside other work (the
    demo's simulation and prediction), the map that follows need not wait for them. A
    300-point fit of random vectors compiles or loads every kernel a real fit uses.
    """
    def compile_kernels() -> None:
        _fit_umap(np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32), 0, 15, 0.1)

    with _warm_up_lock:
        if not _warm_up:
            _warm_up.append(threading.Thread(target=compile_kernels, daemon=True, name="umap-warm-up"))
            _warm_up[0].start()
        return _warm_up[0]


def fit_embedding_map(embedding: np.ndarray, seed: int = 0, n_neighbors: int = 15,
                      min_dist: float = 0.1) -> np.ndarray:
    """Fit a 2-D UMAP to latent vectors.

    Parameters
    ----------
    embedding : numpy.ndarray, shape (N, 192)
        Rows with NaN (unprocessed spectra) are left out of the fit and get NaN coordinates.
    seed : int
        UMAP's random state (a fixed seed makes UMAP single-threaded and reproducible).
    n_neighbors, min_dist
        UMAP's settings (its defaults for n_neighbors; min_dist 0.1).

    Returns
    -------
    numpy.ndarray, shape (N, 2), float32
        Map coordinates.
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    good = np.isfinite(embedding).all(axis=1)
    if good.sum() <= n_neighbors:
        raise UsageError(f"an embedding map needs more than {n_neighbors} processed spectra, got {good.sum()}")
    xy = np.full((len(embedding), 2), np.nan, np.float32)
    xy[good] = _fit_umap(embedding[good], seed, n_neighbors, min_dist)
    logger.info("fitted the UMAP map on %d spectra", good.sum())
    return xy


def place_in_map(reference_embedding: np.ndarray, reference_xy: np.ndarray, embedding: np.ndarray,
                 n_neighbors: int = PLACEMENT_NEIGHBOURS) -> np.ndarray:
    """Coordinates of new latent vectors in a fitted map, from their nearest mapped neighbours.

    Each new vector lands at the mean position of its ``n_neighbors`` nearest reference vectors
    (Euclidean, in the embedding), weighted by inverse distance; an exact match lands on its
    twin. Reference or new rows with NaN are ignored or stay NaN.

    Parameters
    ----------
    reference_embedding : numpy.ndarray, shape (M, 192)
        Latent vectors of the mapped objects.
    reference_xy : numpy.ndarray, shape (M, 2)
        Their map coordinates.
    embedding : numpy.ndarray, shape (N, 192)
        Latent vectors to place.
    n_neighbors : int

    Returns
    -------
    numpy.ndarray, shape (N, 2), float32
    """
    from sklearn.neighbors import NearestNeighbors

    reference_embedding = np.asarray(reference_embedding, dtype=np.float32)
    reference_xy = np.asarray(reference_xy, dtype=np.float64)
    embedding = np.atleast_2d(np.asarray(embedding, dtype=np.float32))
    usable = np.isfinite(reference_embedding).all(axis=1) & np.isfinite(reference_xy).all(axis=1)
    good = np.isfinite(embedding).all(axis=1)
    xy = np.full((len(embedding), 2), np.nan, np.float32)
    if not good.any() or not usable.any():
        return xy
    k = min(n_neighbors, int(usable.sum()))
    distance, index = NearestNeighbors(n_neighbors=k).fit(reference_embedding[usable]).kneighbors(embedding[good])
    weights = 1.0 / np.maximum(distance, 1e-9)
    weights /= weights.sum(axis=1, keepdims=True)
    xy[good] = np.einsum("nk,nkd->nd", weights, reference_xy[usable][index])
    return xy


def save_map(path: str | os.PathLike, object_ids, xy: np.ndarray, seed: int) -> Path:
    """Write a map as Parquet (object_id, umap_x, umap_y), atomically."""
    frame = pd.DataFrame({"object_id": pd.array(list(map(str, object_ids)), dtype="string"),
                          MAP_COLUMNS[0]: xy[:, 0], MAP_COLUMNS[1]: xy[:, 1]})
    frame.attrs = {"method": "umap", "seed": int(seed)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def read_map(path: str | os.PathLike) -> pd.DataFrame:
    """Read a map written by :func:`save_map` (object_id, umap_x, umap_y)."""
    frame = pd.read_parquet(path, columns=["object_id", *MAP_COLUMNS])
    frame["object_id"] = frame["object_id"].astype("string")
    return frame


def stored_map(catalogue: pd.DataFrame, map_path: str | os.PathLike) -> pd.DataFrame | None:
    """The map in ``map_path`` if it maps the catalogue's objects, in its order; else None."""
    map_path = Path(map_path)
    if not map_path.is_file():
        return None
    try:
        frame = read_map(map_path)
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("%s unreadable (%s)", map_path, exc)
        return None
    if not frame["object_id"].equals(catalogue["object_id"].astype("string").reset_index(drop=True)):
        logger.info("%s maps other objects", map_path)
        return None
    return frame


def map_coordinates(results, map_path: str | os.PathLike, seed: int = 0) -> pd.DataFrame:
    """A results set's map coordinates, without writing into its folder.

    From the catalogue when it has them; else from ``map_path`` when that file maps the same
    objects; else fitted now and saved to ``map_path``.

    Parameters
    ----------
    results : mtopnet_core.results.Results
    map_path : path-like
        Where a map fitted here is kept (the app's data folder).
    seed : int

    Returns
    -------
    pandas.DataFrame
        object_id, umap_x, umap_y, one row per catalogue row, in its order.
    """
    catalogue = results.catalogue
    if set(MAP_COLUMNS) <= set(catalogue.columns):
        return catalogue[["object_id", *MAP_COLUMNS]].copy()
    stored = stored_map(catalogue, map_path)
    if stored is not None:
        return stored
    xy = fit_embedding_map(results.embedding(), seed=seed)
    save_map(map_path, catalogue["object_id"], xy, seed)
    return read_map(map_path)


def ensure_embedding_map(results, seed: int = 0) -> np.ndarray:
    """Give a results set its UMAP map (catalogue columns ``umap_x``, ``umap_y``) if it lacks one.

    Writes into the results folder: for results of one's own (``mtopnet evaluate``, the app's
    demo and its predictions of data sets), never for a folder that was only to be read.

    Parameters
    ----------
    results : mtopnet_core.results.Results
    seed : int

    Returns
    -------
    numpy.ndarray, shape (N, 2)
        The map's coordinates.
    """
    if set(MAP_COLUMNS) <= set(results.catalogue.columns):
        return results.catalogue[list(MAP_COLUMNS)].to_numpy(float)
    xy = fit_embedding_map(results.embedding(), seed=seed)
    catalogue = results.catalogue.copy()
    catalogue[MAP_COLUMNS[0]], catalogue[MAP_COLUMNS[1]] = xy[:, 0], xy[:, 1]
    results.replace_catalogue(catalogue, embedding_map={"method": "umap", "seed": seed})
    return xy
