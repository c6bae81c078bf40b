"""What the app can open besides the demo: a results folder of ``mtopnet predict``, or a data
set (store) that it predicts first, once, into its own data folder.

Opening happens through the page's address (``?open=PATH``), so that a reload shows the same
data and every session knows what it shows. Only M-TOPnet folders are opened; anything else
gets a one-line reason.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from mtopnet_core.batch import predict_store
from mtopnet_core.embedding import ensure_embedding_map
from mtopnet_core.errors import ResultsError
from mtopnet_core.results import open_results
from mtopnet_core.store import DatasetError, open_dataset

__all__ = ["source_kind", "store_results", "results_ready", "predict_with_map", "predict_for_app"]

logger = logging.getLogger(__name__)
_lock = threading.Lock()


def source_kind(path: str | Path) -> str:
    """``"results"`` or ``"store"``.

    Raises
    ------
    ValueError
        One line naming the path and why it cannot be opened.
    """
    path = Path(str(path).strip()).expanduser()
    if not path.is_dir():
        raise ValueError(f"{path}: no such folder")
    if (path / "results.json").is_file():
        try:
            results = open_results(path)
        except ResultsError as exc:
            raise ValueError(str(exc)) from None
        if results.metadata.get("status") != "complete":
            raise ValueError(f"{path}: its prediction did not finish (status {results.metadata.get('status')!r})")
        return "results"
    try:
        open_dataset(path)
    except DatasetError as exc:
        raise ValueError(f"{exc} (the app opens results of `mtopnet predict` or M-TOPnet data sets)") from None
    return "store"


def store_results(store: Path, data_dir: Path) -> Path:
    """Where the app keeps its predictions of a store (one folder per store path)."""
    tag = hashlib.sha1(str(Path(store).resolve()).encode()).hexdigest()[:10]
    return Path(data_dir) / "predicted" / f"{Path(store).name}-{tag}"


def results_ready(results: Path) -> bool:
    """Whether a results folder is complete and has its UMAP map (what the app opens)."""
    try:
        complete = open_results(results).metadata.get("status") == "complete"
    except ResultsError:
        return False
    return complete and (Path(results) / "embedding_map.joblib").is_file()


def predict_with_map(store: Path, results: Path, model: Path, seed: int,
                     report: Callable[[str, float], None] = lambda text, fraction: None) -> Path:
    """Predict a store into a results folder (replacing an unfinished one) and fit its UMAP map."""
    report(f"predicting {len(open_dataset(store))} spectra of {store} with the model", 0.35)
    predict_store(store, results, model, overwrite=True, progress=False)
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
    results = store_results(store, data_dir)
    with _lock:
        return results if results_ready(results) else predict_with_map(store, results, model, 0, report)
