"""The public API of the README runs as written, `import mtopnet_core` stays light, and a
non-editable install carries the shipped model and no top-level `app`."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtopnet_core.assets import SHIPPED_MODEL

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs(small_survey, tmp_path, monkeypatch):
    from mtopnet_core.fits_io import export_dataset_fits

    example = re.search(r"executed by tests/test_public_api.py -->\n```python\n(.*?)```",
                        (ROOT / "README.md").read_text(), re.S).group(1)
    (tmp_path / "survey").symlink_to(small_survey)
    export_dataset_fits(small_survey, tmp_path / "fits", first=1)[0].rename(tmp_path / "spectrum.fits")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {})
    first, second = printed.getvalue().splitlines()
    name, z, log_mstar = first.split()
    assert name == "MOCK-7-0000000" and 0.7 <= float(z) <= 3.1 and 6 < float(log_mstar) < 13
    assert "[None]" in second


def test_importing_the_package_loads_no_network_runtime():
    from isolation import modules_imported_by

    assert modules_imported_by("import mtopnet_core as mt; mt.Spectra", ("tensorflow", "keras", "onnxruntime")) == []
    import mtopnet_core

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        mtopnet_core.nothing  # noqa: B018


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_non_editable_install_predicts_from_any_folder_with_the_shipped_model(tmp_path):
    source = tmp_path / "source"
    for part in ("mtopnet_core", "assets", "app", "tests"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    assert not (site / "app").exists() and not list(site.rglob("headless.py"))
    assert (site / "mtopnet_core" / "shipped" / SHIPPED_MODEL / "model.onnx").is_file()
    assert (site / "mtopnet_core" / "shipped" / SHIPPED_MODEL / "heads.npz").is_file()
    code = """
import numpy as np, mtopnet_core as mt
folder = mt.shipped_model_dir()
model = mt.load_trained_model(folder)
flux = np.random.default_rng(1).normal(1.0, 0.1, (2, 12217))
out = mt.predict(model, mt.Spectra(flux, mt.load_sky_model().emission, error=np.full((2, 12217), 0.1)))
print(folder, np.isfinite(out.summary.z_peak).all())
"""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MTOPNET_ASSETS", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    folder, finite = done.stdout.split()
    assert Path(folder).is_relative_to(site) and finite == "True"
