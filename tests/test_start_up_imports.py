"""What a prediction process and the app's first page import before their first results (issue 11).

``scipy.stats`` and ``scipy.signal`` took ~1 s of every prediction process (the command and each
worker); the dashboard's modules, the simulator and the batch predictor ~1.2 s of the app's first
page. Each check runs in a fresh interpreter, so nothing imported by other tests counts.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_the_prediction_path_imports_no_scipy_stats_or_signal():
    # what `mtopnet predict` and its workers load: the batch driver, the ONNX runtime, the model
    statement = ("import mtopnet_core.batch, mtopnet_core.runtime, mtopnet_core.cli\n"
                 "from mtopnet_core.assets import shipped_model_dir\n"
                 "from mtopnet_core.inference import load_trained_model\n"
                 "load_trained_model(shipped_model_dir())")
    assert _imported_after(statement, ("scipy.stats", "scipy.signal", "scipy.optimize")) == []


@pytest.mark.multiprocess
def test_the_apps_first_page_leaves_the_dashboard_simulator_and_predictor_for_later():
    modules = ("app.dashboard", "app.state", "app.data", "mtopnet_core.simulate", "mtopnet_core.batch")
    assert _imported_after("import app.main", modules) == []
