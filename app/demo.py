"""The demo: a mock MOONS test set predicted with the shipped model, made once and cached.

Made by the core only (simulate -> store -> predict -> UMAP map), with a seed of its own so it is
never part of the shipped model's training set, in ``DATA_DIR/demo-<version>-<model>``: a demo
predicted with another model (or another calibration of it) is never shown with this one.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from mtopnet_core.embedding import warm_up_umap

from .sources import predict_with_map, results_ready

__all__ = ["DEMO_SIZE", "DEMO_SEED", "demo_results", "build_demo"]

DEMO_SIZE = 4000
DEMO_SEED = 20261125
DEMO_VERSION = "v5"
"""The demo's own layout (its size, seed, population): bumped when those change."""
_lock = threading.Lock()


def _demo_folder(data_dir: Path, model: Path) -> Path:
    # model.json holds the calibration and the checksums of the network: it names the predictions
    tag = hashlib.sha256((Path(model) / "model.json").read_bytes()).hexdigest()[:10]
    return Path(data_dir) / f"demo-{DEMO_VERSION}-{tag}"


def demo_results(data_dir: Path, model: Path) -> Path:
    """Folder of the demo's results predicted with ``model`` (may not exist yet)."""
    return _demo_folder(data_dir, model) / "results"


def build_demo(data_dir: Path, model: Path, report: Callable[[str, float], None] = lambda text, fraction: None,
               n: int = DEMO_SIZE) -> Path:
    """Make the demo results if they are not there yet; returns the results folder.

    ``report(text, fraction)`` is called as the steps advance (for a progress bar).
    """
    # the simulator's import (~0.6 s) is paid here, in the build's thread, not by the first page
    from mtopnet_core.simulate.settings import SimulationSettings
    from mtopnet_core.simulate.survey import simulate_survey

    folder = _demo_folder(data_dir, model)
    results = folder / "results"
    with _lock:
        if results_ready(results):
            return results
        warm_up_umap()  # umap-learn's import and compilation, beside the simulation and prediction
        report(f"simulating {n} mock MOONS spectra (seed {DEMO_SEED})", 0.05)
        simulate_survey(folder / "survey", n, DEMO_SEED, SimulationSettings(), overwrite=True, progress=False)
        return predict_with_map(folder / "survey", results, model, DEMO_SEED, report)
