"""What a bad file, a killed run or a hostile path must never do: run code, lose work, leave processes, or
give confident nonsense."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from mtopnet_core import batch, cli  # noqa: E402
from mtopnet_core.batch import predict_store  # noqa: E402
from mtopnet_core.conventions import MASK_BITS  # noqa: E402
from mtopnet_core.fits_io import export_dataset_fits  # noqa: E402
from mtopnet_core.inference import load_trained_model, predict  # noqa: E402
from mtopnet_core.preprocessing import preprocess  # noqa: E402
from mtopnet_core.results import ResultsError, open_results  # noqa: E402
from mtopnet_core.spectra import Spectra
from mtopnet_core.store import open_dataset  # noqa: E402

from conftest import damage_chunk  # noqa: E402


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_an_interrupted_predict_resumes_to_the_same_results(small_survey, tiny_model, tmp_path, monkeypatch):
    predict_store(small_survey, tmp_path / "whole", tiny_model, workers=1, progress=False)
    real, calls = batch.predict_rows, []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "predict_rows", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        predict_store(small_survey, tmp_path / "resumed", tiny_model, workers=1, progress=False)
    with pytest.raises(ResultsError, match="run the same `mtopnet predict` command again"):
        open_results(tmp_path / "resumed")
    monkeypatch.setattr(batch, "predict_rows", real)
    calls.clear()
    stray = tmp_path / "resumed" / "predictions.zarr" / "embedding" / "c" / "1" / ".0.99999.1.tmp"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"half a chunk")  # what a kill -9 during a chunk's write leaves
    predict_store(small_survey, tmp_path / "resumed", tiny_model, workers=1, progress=False)
    assert not stray.exists()
    whole, resumed = open_results(tmp_path / "whole"), open_results(tmp_path / "resumed")
    assert resumed.catalogue.equals(whole.catalogue)
    for name in ("redshift_pdf", "embedding", "line_probability"):
        np.testing.assert_array_equal(getattr(resumed, name)(), getattr(whole, name)())
    assert not (tmp_path / "resumed" / "parts").exists()


def test_a_resume_never_mixes_another_model_or_input(small_survey, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "predict_rows", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        predict_store(small_survey, tmp_path / "r", tiny_model, workers=1, progress=False, mc_passes=0)
    with pytest.raises(ResultsError, match="unfinished run of another input, model or settings"):
        predict_store(small_survey, tmp_path / "r", tiny_model, workers=1, progress=False, mc_passes=2)


@pytest.mark.parametrize("array", ["flux", "mask"])
@pytest.mark.parametrize("damage", ["truncated", "one byte flipped"])
def test_a_damaged_chunk_is_named_in_one_line(small_survey, tiny_model, tmp_path, capsys, array, damage):
    # A truncated Blosc chunk once crashed the process (Blosc trusts its header's sizes) and a flipped
    # byte can decode to wrong numbers silently: every chunk carries a checksum, checked first.
    damaged = tmp_path / "survey"
    shutil.copytree(small_survey, damaged)
    chunk = sorted(p for p in (damaged / "spectra.zarr" / array).rglob("*") if p.is_file() and p.name != "zarr.json")[1]
    damage_chunk(chunk, damage)
    assert cli.main(["predict", "--input", str(damaged), "--out", str(tmp_path / "r"), "--model", str(tiny_model),
                     "--workers", "1", "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert f"spectra.zarr/{array}: rows" in err and "damaged" in err


def test_impossible_surveys_are_refused_at_once(tmp_path, capsys):
    start = time.time()
    assert cli.main(["simulate", "--n", str(10**12), "--seed", "1", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "more than one survey" in _one_line_error(capsys) and time.time() - start < 5
    assert not (tmp_path / "s").exists()


def test_a_damaged_model_file_is_called_damaged(tiny_model, tmp_path, small_survey, capsys):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    content = (copy / "model.keras").read_bytes()
    (copy / "model.keras").write_bytes(content[: len(content) // 2])
    assert cli.main(["predict", "--input", str(small_survey), "--out", str(tmp_path / "r"), "--model", str(copy),
                     "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert "model.keras" in err and "damaged" in err and "not found" not in err.lower()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.multiprocess
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("source", ["store", "fits"])
def test_nothing_outlives_a_killed_prediction(source, small_survey, tiny_model, tmp_path):
    """``predict`` killed by ``kill -9`` mid-run leaves no process behind: a store is predicted on
    threads, FITS files are read by worker processes (chunks of 4 files here, read by processes
    however fast they read), which end with it."""
    source_path, readers = small_survey, 0
    if source == "fits":
        source_path, readers = tmp_path / "fits", 2
        export_dataset_fits(small_survey, source_path)
    code = ("import sys; from mtopnet_core import batch; batch.CHUNK_ROWS = 4; batch.SLOW_READ_SECONDS = 0.0; "
            "from mtopnet_core.cli import main; "
            f"sys.exit(main(['predict', '--input', {str(source_path)!r}, '--out', {str(tmp_path / 'r')!r}, "
            f"'--model', {str(tiny_model)!r}, '--workers', '2', '--quiet']))")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 120
    seen: set[int] = set()
    while time.time() < end and parent.poll() is None:
        seen.update(_children(parent.pid))
        if len(seen) >= readers and any((tmp_path / "r" / "parts").glob("*.parquet")):
            break
        time.sleep(0.05)
    assert parent.poll() is None, "the command ended before it was killed"
    assert len(seen) >= readers, "the FITS readers did not start"
    seen.update(_children(parent.pid))
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def alive(pid: int) -> bool:
        try:
            return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
        except OSError:
            return False

    end = time.time() + 20
    while time.time() < end and any(alive(pid) for pid in seen):
        time.sleep(0.2)
    assert [pid for pid in seen if alive(pid)] == [], "processes outlived the killed prediction"


def test_partial_spectra_and_out_of_range_outputs_are_flagged(small_survey, tiny_model):
    ds = open_dataset(small_survey)
    data = ds.read(slice(0, 4))
    mask = data["mask"].copy()
    mask[0, 4000:] |= MASK_BITS["no_coverage"]  # like a VIMOS spectrum: two thirds of the grid missing
    out = predict(load_trained_model(tiny_model), Spectra(data["flux"], ds.sky, data["error"], mask))
    assert out.coverage[0] < 0.35 < 0.8 < out.coverage[1]
    assert "coverage" in out.flags[0] and "coverage" not in out.flags[1]
    from mtopnet_core.inference import domain_flags

    flags = domain_flags({"coverage_min": 0.8, "log_mstar": [8.0, 11.5], "log_sfr": [-1.7, 3.4]},
                         np.array([0.84, 0.84, 0.84, 0.84]), np.array([1.5, 0.701, 1.5, np.nan]),
                         {"log_mstar": np.array([10.0, 10.0, 14.8, 10.0]), "log_sfr": np.array([1.0, 1.0, 1.0, 1.0])})
    assert flags[0] == "" and "edge" in flags[1] and "log M* 14.80 outside" in flags[2] and flags[3] == ""


def test_a_galaxy_brighter_than_every_training_spectrum_is_flagged(small_survey, tiny_model):
    trained = load_trained_model(tiny_model)
    ceiling = np.asarray(trained.domain["continuum_max"])
    assert ceiling.shape == (10,) and (ceiling > 0).all()
    ds = open_dataset(small_survey)
    data = ds.read(slice(0, 4))
    plain = predict(trained, Spectra(data["flux"], ds.sky, data["error"], data["mask"]))
    assert not any("continuum" in flag for flag in plain.flags)
    # the same galaxies made three times as bright as the brightest training continuum
    continuum = preprocess(Spectra(data["flux"], ds.sky, data["error"], data["mask"]), trained.preprocessing).continuum
    factor = (3.0 / np.max(continuum / ceiling, axis=1))[:, None]
    bright = predict(trained, Spectra(data["flux"] * factor, ds.sky, data["error"] * factor, data["mask"]))
    assert all("continuum 3.0x the brightest training spectrum's" in flag for flag in bright.flags), bright.flags
