"""The demo: a mock MOONS test set predicted with the shipped model, made once and cached.

Made by the core only (simulate -> store -> predict -> UMAP map), with a seed of its own so it is
never part of the shipped model's training set, in ``DATA_DIR/demo-<version>``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from mtopnet_core.simulate.settings import SimulationSettings
from mtopnet_core.simulate.survey import simulate_survey

from .sources import predict_with_map, results_ready

__all__ = ["DEMO_SIZE", "DEMO_SEED", "demo_results", "build_demo"]

DEMO_SIZE = 4000
DEMO_SEED = 20261125
DEMO_VERSION = "v4.1"
"""The shipped model and its calibration (v4 with the quantile map): a demo predicted with another is made again."""
_lock = threading.Lock()


def demo_results(data_dir: Path) -> Path:
    """Folder of the demo's results (may not exist yet)."""
    return Path(data_dir) / f"demo-{DEMO_VERSION}" / "results"


def build_demo(data_dir: Path, model: Path, report: Callable[[str, float], None] = lambda text, fraction: None,
               n: int = DEMO_SIZE) -> Path:
    """Make the demo results if they are not there yet; returns the results folder.

    ``report(text, fraction)`` is called as the steps advance (for a progress bar).
    """
    folder = Path(data_dir) / f"demo-{DEMO_VERSION}"
    results = folder / "results"
    with _lock:
        if results_ready(results):
            return results
        report(f"simulating {n} mock MOONS spectra (seed {DEMO_SEED})", 0.05)
        simulate_survey(folder / "survey", n, DEMO_SEED, SimulationSettings(), overwrite=True, progress=False)
        return predict_with_map(folder / "survey", results, model, DEMO_SEED, report)
