"""The command line (one-line errors, exit status 2) and the shipped assets' checksums."""

import json
import shutil
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

from mtopnet_core import cli
from mtopnet_core.assets import ASSETS, SHIPPED_MODEL, AssetError, asset_path, assets_dir, shipped_model_dir


def test_simulate_and_report_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "survey"
    assert cli.main(["simulate", "--n", "24", "--seed", "3", "--out", str(out), "--workers", "1",
                     "--chunk-size", "8", "--quiet", "--exposure-mix", "2:1,8:1"]) == 0
    assert cli.main(["report", "--data", str(out)]) == 0
    for name in ("fig1_population.png", "fig2_spectra.png"):
        data = (out / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["n_spectra"] == 24 and set(summary["exposure_fractions"]) <= {"2h", "8h"}
    assert 0.1 < summary["sky_masked_fraction"] < 0.2
    assert summary["paper"]["m_h"] == {"range": [19.0, 27.0], "peak": [24.0, 25.0]}  # drawn over Fig. 1
    capsys.readouterr()
    assert cli.main(["simulate", "--n", "24", "--seed", "3", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a complete data set" in err


@pytest.mark.parametrize("argv, message", [
    (["simulate", "--n", "0", "--seed", "1", "--out", "{tmp}/a"], "--n must be at least 1"),
    (["simulate", "--n", "5", "--seed", "1", "--out", "{tmp}/a", "--exposure-mix", "x"], "HOURS:WEIGHT"),
    (["report", "--data", "{tmp}"], "not an M-TOPnet data set"),
    (["export-fits", "--data", "{tmp}/none", "--out", "{tmp}/f"], "not an M-TOPnet data set"),
])
def test_bad_input_gives_one_line_errors(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.parametrize("argv, message", [
    (["export", "--model", "{tmp}/none"], "none/model.keras: missing"),
    (["train", "--data", "{tmp}/none", "--out", "{tmp}/model"], "none: not an M-TOPnet data set"),
])
def test_the_keras_commands_tell_a_wrong_folder_in_one_line_before_importing_tensorflow(argv, message, tmp_path):
    """TensorFlow prints to stderr on import whatever its log level, so the folder is checked first
    (in a new process: an imported TensorFlow says nothing more, and it writes past ``capsys``)."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    done = subprocess.run([sys.executable, "-c", "import sys; from mtopnet_core import cli; sys.exit(cli.main())",
                           *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "model").exists()


def test_a_bug_keeps_its_traceback_while_the_projects_errors_are_one_line(tmp_path, monkeypatch, capsys):
    def buggy(args):
        raise ValueError("an internal mistake")

    monkeypatch.setattr(cli, "_cmd_report", buggy)
    with pytest.raises(ValueError, match="an internal mistake"):
        cli.main(["report", "--data", str(tmp_path)])
    monkeypatch.setattr(cli, "_cmd_report", lambda args: open(tmp_path / "missing" / "file"))
    assert cli.main(["report", "--data", str(tmp_path)]) == 2
    assert "No such file" in capsys.readouterr().err


@pytest.mark.parametrize("command, status", [("lambda args: 0", 0), ("cli._cmd_report", 2), ("lambda args: 3", 3)])
def test_the_console_script_exits_with_mains_status_and_tunes_the_collector(command, status, tmp_path):
    """``mtopnet`` is :func:`cli.run`: ``main``'s exit status (0, a one-line error's 2, any other),
    with fewer young garbage collections and the collector frozen once ``main`` is done."""
    (script,) = entry_points(group="console_scripts", name="mtopnet")
    assert script.value == "mtopnet_core.cli:run"
    code = ("import gc, sys\nfrom mtopnet_core import cli\n"
            f"cli._cmd_report = {command}\n"
            f"sys.argv = ['mtopnet', 'report', '--data', {str(tmp_path)!r}]\n"
            "frozen_before = gc.get_freeze_count()\n"
            "try:\n    cli.run()\nexcept SystemExit as exc:\n"
            "    print(exc.code, gc.get_threshold()[0], frozen_before, gc.get_freeze_count())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    exit_status, young, frozen_before, frozen_after = done.stdout.split()
    assert int(exit_status) == status
    assert int(young) == cli.YOUNG_OBJECTS_PER_COLLECTION > 700  # CPython's default
    assert int(frozen_before) == 0 and int(frozen_after) > 10_000  # the modules' objects, at least


def test_check_fits_reports_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.fits"
    bad.write_text("not fits")
    assert cli.main(["check-fits", str(bad)]) == 2
    assert "bad.fits: not a FITS file" in capsys.readouterr().out


def test_assets_verify_and_a_corrupt_copy_is_refused(tmp_path, monkeypatch):
    for name in ASSETS:
        assert asset_path(name).is_file()
    for asset in ASSETS.values():
        (tmp_path / asset.filename).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(assets_dir() / asset.filename, tmp_path / asset.filename)
    data = bytearray((tmp_path / ASSETS["sky_model"].filename).read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / ASSETS["sky_model"].filename).write_bytes(bytes(data))
    monkeypatch.setenv("MTOPNET_ASSETS", str(tmp_path))
    assert asset_path("template_bank") == tmp_path / ASSETS["template_bank"].filename
    with pytest.raises(AssetError, match="checksum mismatch.*build_sky_model"):
        asset_path("sky_model")
    # the shipped model is verified the same way
    assert shipped_model_dir() == tmp_path / SHIPPED_MODEL
    (tmp_path / ASSETS["model_metadata"].filename).write_text("{}")
    with pytest.raises(AssetError, match="model.json: checksum mismatch"):
        shipped_model_dir()


def test_template_bank_content():
    from mtopnet_core.simulate.templates import load_template_bank

    bank = load_template_bank()
    assert bank.luminosity.shape == (240, 22156)
    assert np.all(np.isfinite(bank.luminosity)) and np.all(bank.luminosity >= 0)
    assert bank.wavelength[0] == pytest.approx(1200, rel=1e-6) and bank.wavelength[-1] < 11000
    young = bank.age_gyr == bank.age_gyr.min()
    old = bank.age_gyr == bank.age_gyr.max()
    # young populations are bluer: more UV per unit red light
    uv, red = np.argmin(np.abs(bank.wavelength - 1500)), np.argmin(np.abs(bank.wavelength - 8000))
    colour = bank.luminosity[:, uv] / bank.luminosity[:, red]
    assert colour[young].min() > colour[old].max()
    assert bank.log_ssfr[young].min() > bank.log_ssfr[old].max()
