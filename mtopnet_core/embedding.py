"""The latent-space map (paper, section 5 and Fig. 13): UMAP of the 192-d embedding to 2-D.

The reducer is fitted once on a results set (with a seed, so the map is reproducible) and saved
next to it with joblib (umap-learn's documented way to persist a fitted UMAP), so that new
spectra can be placed in the same map with ``transform``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import joblib
import numpy as np

__all__ = ["fit_embedding_map", "place_in_map", "save_reducer", "load_reducer", "ensure_embedding_map", "REDUCER_FILE"]

logger = logging.getLogger(__name__)

REDUCER_FILE = "embedding_map.joblib"


def _umap(seed: int, n_neighbors: int, min_dist: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn's import-time warnings (numba, tensorflow)
        import umap
    return umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                     transform_seed=seed)


def fit_embedding_map(embedding: np.ndarray, seed: int = 0, n_neighbors: int = 15,
                      min_dist: float = 0.1):
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
    reducer : umap.UMAP
        The fitted reducer.
    xy : numpy.ndarray, shape (N, 2)
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    good = np.isfinite(embedding).all(axis=1)
    if good.sum() <= n_neighbors:
        raise ValueError(f"an embedding map needs more than {n_neighbors} processed spectra, got {good.sum()}")
    reducer = _umap(seed, n_neighbors, min_dist)
    xy = np.full((len(embedding), 2), np.nan, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state" is expected
        xy[good] = reducer.fit_transform(embedding[good])
    logger.info("fitted the UMAP map on %d spectra", good.sum())
    return reducer, xy


def place_in_map(reducer, embedding: np.ndarray) -> np.ndarray:
    """Coordinates of new latent vectors in a fitted map, shape (N, 2); NaN rows stay NaN."""
    embedding = np.atleast_2d(np.asarray(embedding, dtype=np.float32))
    good = np.isfinite(embedding).all(axis=1)
    xy = np.full((len(embedding), 2), np.nan, np.float32)
    if good.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xy[good] = reducer.transform(embedding[good])
    return xy


def save_reducer(reducer, path: str | os.PathLike) -> Path:
    """Save a fitted reducer (joblib), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(reducer, tmp)
    os.replace(tmp, path)
    return path


def load_reducer(path: str | os.PathLike):
    """Load a reducer saved by :func:`save_reducer` (a file you made: joblib runs code on load)."""
    return joblib.load(path)


def ensure_embedding_map(results, seed: int = 0):
    """Give a results set its UMAP map (``umap_x``, ``umap_y`` and the saved reducer) if it lacks one.

    Parameters
    ----------
    results : mtopnet_core.results.Results
    seed : int

    Returns
    -------
    reducer : umap.UMAP
        The saved reducer (loaded) or the newly fitted one.
    """
    path = results.path / REDUCER_FILE
    if path.is_file() and {"umap_x", "umap_y"} <= set(results.catalogue.columns):
        return load_reducer(path)
    reducer, xy = fit_embedding_map(results.embedding(), seed=seed)
    save_reducer(reducer, path)
    catalogue = results.catalogue.copy()
    catalogue["umap_x"], catalogue["umap_y"] = xy[:, 0], xy[:, 1]
    results.replace_catalogue(catalogue, embedding_map={"file": REDUCER_FILE, "seed": seed, "method": "umap"})
    return reducer
