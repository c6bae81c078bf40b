"""What the app can open besides the demo: a results folder of ``mtopnet predict``, or a data
set (store) that it predicts first, once, into its own data folder.

Opening happens through the page's address (``?open=PATH``), so that a reload shows the same
data and every session knows what it shows. A path from the page is hostile until checked: it
is resolved (links followed) and must lie under one of the configured roots, and every refusal
reads the same whether the path exists or not, so that the page learns nothing about the rest
of the server's disk. Opened folders are only read: their predictions and maps go into the
app's data folder.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from mtopnet_core.embedding import MAP_FILE, ensure_embedding_map, map_coordinates, warm_up_umap
from mtopnet_core.errors import ResultsError
from mtopnet_core.results import Results, open_results
from mtopnet_core.store import DatasetError, open_dataset

__all__ = ["resolve_under_roots", "source_kind", "store_results", "map_path", "results_ready", "predict_with_map",
           "predict_for_app", "prepare_map"]

logger = logging.getLogger(__name__)
_lock = threading.Lock()


def _tag(path: Path, *described_by: Path) -> str:
    # the folder's resolved path, and the bytes of the files that say what it holds
    digest = hashlib.sha1(str(Path(path).resolve()).encode())
    for file in described_by:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:10]


def resolve_under_roots(text: str, roots: Sequence[Path]) -> Path:
    """The folder a page names, if it lies under one of the roots.

    Parameters
    ----------
    text : str
        The path as typed or given in ``?open=``.
    roots : sequence of pathlib.Path
        Resolved folders the page may open things under.

    Returns
    -------
    pathlib.Path
        The resolved folder.

    Raises
    ------
    ValueError
        One line that names the path as given and says nothing about what exists outside the roots.
    """
    shown = str(text).strip()[:200]
    refusal = ValueError(f"{shown!r} cannot be opened: give a results folder or data set under the app's "
                         f"folders ({', '.join(p.name or str(p) for p in roots)})")
    if not shown or "\x00" in shown:
        raise refusal
    try:
        path = Path(shown).expanduser()
        if not path.is_absolute():
            raise refusal
        path = path.resolve()
    except (OSError, RuntimeError):
        raise refusal from None
    if not any(path == root or path.is_relative_to(root) for root in roots) or not path.is_dir():
        raise refusal
    return path


def source_kind(path: Path) -> str:
    """``"results"`` or ``"store"``, for a folder already checked by :func:`resolve_under_roots`.

    Raises
    ------
    ValueError
        One line naming the folder and why it cannot be opened.
    """
    if (path / "results.json").is_file():
        try:
            open_results(path)
        except ResultsError as exc:
            raise ValueError(str(exc)) from None
        return "results"
    try:
        open_dataset(path)
    except DatasetError as exc:
        raise ValueError(f"{exc} (the app opens results of `mtopnet predict` or M-TOPnet data sets)") from None
    return "store"


def store_results(store: Path, data_dir: Path, model: Path) -> Path:
    """Where the app keeps its predictions of a store by a model.

    One folder per store path, store (its ``dataset.json``: seed, size, settings) and model (its
    ``model.json``: calibration, the network's checksums): a store simulated again in the same
    place, or a server started with another model, is predicted again, never shown with the
    predictions of what was there before.
    """
    store = Path(store)
    tag = _tag(store, store / "dataset.json", Path(model) / "model.json")
    return Path(data_dir) / "predicted" / f"{store.name}-{tag}"


def map_path(results: Path, data_dir: Path) -> Path:
    """Where the app keeps the UMAP map of a results folder that it only reads (one per folder path
    and ``results.json``: results predicted again in the same place get a map of their own)."""
    results = Path(results)
    return Path(data_dir) / "maps" / f"{results.name}-{_tag(results, results / 'results.json')}" / MAP_FILE


def _has_map(results: Results, data_dir: Path) -> bool:
    if {"umap_x", "umap_y"} <= set(results.catalogue.columns):
        return True
    return map_path(results.path, data_dir).is_file()


def results_ready(results: Path, data_dir: Path | None = None) -> bool:
    """Whether a results folder is complete and has its UMAP map (in it, or in the app's data folder)."""
    try:
        opened = open_results(results)
    except ResultsError:
        return False
    return _has_map(opened, data_dir) if data_dir is not None else {"umap_x", "umap_y"} <= set(opened.catalogue)


def predict_with_map(store: Path, results: Path, model: Path, seed: int,
                     report: Callable[[str, float], None] = lambda text, fraction: None) -> Path:
    """Predict a store into a results folder of the app's own (resuming an unfinished one) and fit its map."""
    from mtopnet_core.batch import predict_store  # here, not with the first page (~0.3 s)

    warm_up_umap()  # umap-learn's import and compilation, beside the simulation and prediction
    try:
        open_results(results)  # complete, only its map is missing
    except ResultsError:
        report(f"predicting {len(open_dataset(store))} spectra of {store.name} with the model", 0.35)
        predict_store(store, results, model, progress=False)  # resumes an interrupted run
    report("fitting the embedding map (UMAP)", 0.7)
    ensure_embedding_map(open_results(results), seed=seed)
    report("ready", 1.0)
    logger.info("%s predicted into %s", store, results)
    return results


def predict_for_app(store: Path, data_dir: Path, model: Path,
                    report: Callable[[str, float], None] = lambda text, fraction: None) -> Path:
    """Predict a store with the model and fit its UMAP map, unless done before; returns the results folder.

    ``report(text, fraction)`` is called as the steps advance (for a progress bar).
    """
    results = store_results(store, data_dir, model)
    with _lock:
        return results if results_ready(results) else predict_with_map(store, results, model, 0, report)


def prepare_map(results: Path, data_dir: Path,
                report: Callable[[str, float], None] = lambda text, fraction: None) -> Path:
    """Fit the UMAP map of a results folder into the app's data folder (never into the results folder)."""
    with _lock:
        report("fitting the embedding map (UMAP), kept in the app's data folder", 0.1)
        map_coordinates(open_results(results), map_path(results, data_dir), seed=0)
        report("ready", 1.0)
    return results
