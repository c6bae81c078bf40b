"""The data set store and the survey runner: determinism, resume, truncation, output safety."""

import json
import multiprocessing
import os

import dask.array as da
import numpy as np
import pytest

import mtopnet_core.simulate.survey as survey
from mtopnet_core.simulate.population import draw_population
from mtopnet_core.store import DatasetError, open_dataset

from conftest import SMALL, damage_chunk


def test_dataset_reads_lazily_and_dask_agrees(small_survey):
    ds = open_dataset(small_survey)
    assert len(ds) == 40 and ds.metadata["seed"] == 7
    assert ds.catalogue["object_id"].iloc[0] == "MOCK-7-0000000"
    flux = ds.read(slice(None))["flux"]
    assert flux.shape == (40, 12217) and flux.dtype == np.float32
    direct = da.from_zarr(str(small_survey / "spectra.zarr"), component="flux")
    assert np.array_equal(direct.compute(), flux)
    assert np.array_equal(ds.read(np.array([3, 17]))["flux"], flux[[3, 17]])
    chunks = list(ds.iter_chunks())
    assert [len(c) for c in chunks] == [16, 16, 8]
    assert chunks[1].names[0] == "MOCK-7-0000016" and np.array_equal(chunks[1].flux, flux[16:32])
    picked = ds.spectra(np.array([3, 17]))
    assert picked.names == ("MOCK-7-0000003", "MOCK-7-0000017")
    assert np.array_equal(picked.mask, ds.read(np.array([3, 17]))["mask"])
    assert np.array_equal(picked[1].flux, flux[[17]]) and picked[1].names == ("MOCK-7-0000017",)
    assert np.isfinite(ds.catalogue["m_h"]).all()


@pytest.mark.multiprocess
def test_same_seed_same_bytes_whatever_the_number_of_workers(small_survey, tmp_path, monkeypatch):
    drawing_beside = []  # the worker processes alive while the population is drawn

    def draw(*args):
        drawing_beside.append(len(multiprocessing.active_children()))
        return draw_population(*args)

    monkeypatch.setattr(survey, "draw_population", draw)
    survey.simulate_survey(tmp_path / "two", 40, 7, SMALL, workers=2)
    assert drawing_beside == [2]  # started first: their start-up overlaps the draw
    a, b = open_dataset(small_survey), open_dataset(tmp_path / "two")
    for name in ("flux", "error", "mask"):
        assert a.read(slice(None))[name].tobytes() == b.read(slice(None))[name].tobytes()
    assert a.catalogue.equals(b.catalogue)


def test_interrupted_run_resumes_to_the_same_bytes(small_survey, tmp_path, monkeypatch):
    out = tmp_path / "interrupted"
    real = survey._run_chunk
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(survey, "_run_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        survey.simulate_survey(out, 40, 7, SMALL, workers=1)
    with pytest.raises(DatasetError, match="incomplete"):
        open_dataset(out)
    monkeypatch.setattr(survey, "_run_chunk", real)
    survey.simulate_survey(out, 40, 7, SMALL, workers=1)
    assert open_dataset(out).read(slice(None))["flux"].tobytes() == \
        open_dataset(small_survey).read(slice(None))["flux"].tobytes()


def test_truncated_dataset_is_detected(small_survey, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_survey, copy)
    chunk_file = next((copy / "spectra.zarr" / "error").rglob("c/1/*"))
    chunk_file.unlink()
    with pytest.raises(DatasetError, match="truncated"):
        open_dataset(copy)
    meta = json.loads((copy / "dataset.json").read_text())
    meta["n_spectra"] = 41
    (copy / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="41"):
        open_dataset(copy)


def test_output_folder_safety(small_survey, tmp_path):
    with pytest.raises(survey.SurveyError, match="already holds a complete data set"):
        survey.simulate_survey(small_survey, 40, 7, SMALL, workers=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(survey.SurveyError, match="not an M-TOPnet data set"):
            survey.simulate_survey(foreign, 10, 1, SMALL, workers=1, overwrite=overwrite)
    assert (foreign / "thesis.tex").read_text() == "precious"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(survey.SurveyError, match="cannot write there|not a folder"):
        survey.simulate_survey(blocker / "sub", 10, 1, SMALL, workers=1)
    with pytest.raises(survey.SurveyError, match="positive"):
        survey.simulate_survey(tmp_path / "x", 0, 1, SMALL)


def test_unfinished_run_with_other_settings_is_not_mixed(tmp_path, monkeypatch):
    out = tmp_path / "mix"
    monkeypatch.setattr(survey, "_run_chunk", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        survey.simulate_survey(out, 20, 1, SMALL, workers=1)
    with pytest.raises(survey.SurveyError, match="other settings"):
        survey.simulate_survey(out, 20, 2, SMALL, workers=1)


def test_exposure_mix_parsing():
    assert survey.exposure_mix("2:1,4:1,8:2") == ((2.0, 4.0, 8.0), (1.0, 1.0, 2.0))
    assert survey.exposure_mix("8") == ((8.0,), (1.0,))
    for bad in ("two:1", "2:1,-4:1", "0.1:1"):
        with pytest.raises(survey.SurveyError):
            survey.exposure_mix(bad)


def test_chunk_files_are_compressed(small_survey):
    raw = 40 * 12217 * 4
    stored = sum(p.stat().st_size for p in (small_survey / "spectra.zarr" / "mask").rglob("*") if p.is_file())
    assert stored < raw / 20  # masks compress to almost nothing
    assert os.path.isfile(small_survey / "catalogue.parquet")


def test_spectra_are_stored_byte_shuffled_and_older_zstd_data_sets_still_read(small_survey, tmp_path):
    import shutil

    import zarr

    raw = 40 * 12217 * 4
    for name in ("flux", "error"):
        codecs = json.loads((small_survey / "spectra.zarr" / name / "zarr.json").read_text())["codecs"]
        assert [codec["name"] for codec in codecs[-2:]] == ["blosc", "crc32c"]
        assert codecs[-2]["configuration"]["cname"] == "lz4" and codecs[-2]["configuration"]["shuffle"] == "shuffle"
    stored = sum(p.stat().st_size for p in (small_survey / "spectra.zarr" / "error" / "c").rglob("*") if p.is_file())
    assert 0 < stored < 0.8 * raw  # byte-shuffled noise (~68% here); zstd alone keeps ~88%

    # a data set written before (zstd, Zarr's default) reads the same spectra
    old = tmp_path / "old"
    shutil.copytree(small_survey, old)
    group = zarr.open_group(old / "spectra.zarr", mode="r+")
    arrays = open_dataset(small_survey).read(slice(None))
    for name in ("flux", "error"):
        del group[name]
        group.create_array(name, data=arrays[name], chunks=(16, 12217), fill_value=0)
    assert json.loads((old / "spectra.zarr" / "flux" / "zarr.json").read_text())["codecs"][-1]["name"] == "zstd"
    again = open_dataset(old).spectra(slice(None))
    assert np.array_equal(again.flux, arrays["flux"]) and np.array_equal(again.error, arrays["error"])


@pytest.mark.parametrize("chain", ["as written", "zstd alone", "no compressor", "big-endian", "chunks across channels"])
def test_runs_of_rows_read_outside_zarr_equal_zarr_for_every_codec_chain(small_survey, tmp_path, chain):
    # Dataset.read decodes runs of whole-row chunks itself (stored_chunks: Zarr's threads cost 0.1-0.3 ms
    # per spectrum in two prediction threads) and leaves any other layout to Zarr: the values never differ.
    import shutil

    import zarr
    from zarr.codecs import BytesCodec

    from mtopnet_core.stored_chunks import ChunkedRows

    copy = tmp_path / "copy"
    shutil.copytree(small_survey, copy)
    arrays = open_dataset(small_survey).read(np.arange(40))  # Zarr's own reading
    group = zarr.open_group(copy / "spectra.zarr", mode="r+")
    layouts = {"zstd alone": {"chunks": (16, 12217)},
               "no compressor": {"chunks": (16, 12217), "compressors": None},
               "big-endian": {"chunks": (16, 12217), "serializer": BytesCodec(endian="big")},
               "chunks across channels": {"chunks": (16, 5000)}}
    if chain in layouts:
        for name in ("flux", "mask"):
            del group[name]
            group.create_array(name, data=arrays[name], fill_value=0, **layouts[chain])
    handled = chain in ("as written", "zstd alone", "no compressor")
    assert (ChunkedRows.open(copy / "spectra.zarr" / "flux") is not None) == handled
    dataset = open_dataset(copy)
    for rows in (slice(None), slice(5, 37), slice(16, 32), slice(39, 50), slice(30, 20), slice(-3, None),
                 slice(0, 40, 3)):
        read = dataset.read(rows)
        for name in ("flux", "error", "mask"):
            assert read[name].dtype == arrays[name].dtype and read[name].flags.writeable
            np.testing.assert_array_equal(read[name], arrays[name][rows])


@pytest.mark.parametrize("chain", ["as written", "no compressor"])
def test_picked_rows_read_outside_zarr_equal_zarr(small_survey, tmp_path, chain):
    # training batches read their own rows (ChunkedRows.take): where they lie in an uncompressed
    # chunk's file, else from the decoded chunk
    import shutil

    import zarr

    from mtopnet_core.stored_chunks import ChunkDamaged, ChunkedRows

    copy = tmp_path / "copy"
    shutil.copytree(small_survey, copy)
    flux = open_dataset(small_survey).read(np.arange(40))["flux"]
    if chain == "no compressor":
        group = zarr.open_group(copy / "spectra.zarr", mode="r+")
        del group["flux"]
        group.create_array("flux", data=flux, chunks=(16, 12217), compressors=None, fill_value=0)
    rows = ChunkedRows.open(copy / "spectra.zarr" / "flux")
    for picked in ([39, 0, 17, 16, 5], [38, 39], [7], [], [3, 3, 20]):
        np.testing.assert_array_equal(rows.take(np.array(picked, dtype=int)), flux[picked].reshape(-1, 12217))
    with pytest.raises(IndexError, match="flux: rows outside 0-39"):
        rows.take(np.array([2, 40]))
    chunk = copy / "spectra.zarr" / "flux" / "c" / "1" / "0"
    damage_chunk(chunk, "truncated")
    with pytest.raises(ChunkDamaged, match="checksum does not match" if chain == "as written" else "is not"):
        rows.take(np.array([1, 20]))
    chunk.unlink()
    with pytest.raises(ChunkDamaged, match="c/1/0 is missing"):
        rows.take(np.array([20]))
    np.testing.assert_array_equal(rows.take(np.array([33, 2])), flux[[33, 2]])


@pytest.mark.parametrize("rows", [slice(16, 32), np.array([3, 17])], ids=["a run of rows", "picked rows"])
@pytest.mark.parametrize("damage", ["truncated", "one byte flipped"])
def test_a_damaged_chunk_is_named_whether_zarr_reads_it_or_not(small_survey, tmp_path, rows, damage):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_survey, copy)
    chunk = copy / "spectra.zarr" / "flux" / "c" / "1" / "0"
    damage_chunk(chunk, damage)
    dataset = open_dataset(copy)
    with pytest.raises(DatasetError, match=r"spectra.zarr/flux: rows \d+-\d+ unreadable, a chunk is damaged "
                                           r"\(its checksum does not match\)") as caught:
        dataset.read(rows)
    assert "\n" not in str(caught.value)
    assert np.array_equal(dataset.read(slice(0, 16))["flux"], open_dataset(small_survey).read(slice(0, 16))["flux"])
    chunk.unlink()  # gone after the data set was opened (open_dataset refuses one with chunks missing)
    with pytest.raises(DatasetError, match=r"rows 16-31 unreadable, a chunk is damaged \(.*c/1/0 is missing\)"):
        dataset.read(slice(16, 32))


@pytest.mark.parametrize("chain", ["zstd", "zstd with its checksum", "zstd and crc32c", "no compressor"])
@pytest.mark.parametrize("dtype, fill", [("float32", np.nan), ("uint8", 0)])
def test_whole_chunks_written_outside_zarr_read_back_by_zarr(tmp_path, chain, dtype, fill):
    # prediction threads write their results' chunks themselves (stored_chunks: through Zarr the
    # writes cost 4% of mtopnet predict on 2 cores); Zarr must read what was written, the last chunk padded
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    from mtopnet_core.stored_chunks import ChunkedRows

    chains = {"zstd": [ZstdCodec(level=0)], "zstd with its checksum": [ZstdCodec(level=3, checksum=True)],
              "zstd and crc32c": [ZstdCodec(level=0), Crc32cCodec()], "no compressor": None}
    group = zarr.open_group(tmp_path / "r.zarr", mode="w")
    group.create_array("a", shape=(40, 30), chunks=(16, 30), dtype=dtype, fill_value=fill, compressors=chains[chain])
    rows = ChunkedRows.open(tmp_path / "r.zarr" / "a")
    assert rows.writable and np.array_equal(rows.fill_value, fill, equal_nan=True)
    values = np.random.default_rng(3).integers(0, 200, (40, 30)).astype(dtype)
    for start in (32, 0, 16):  # any order; the last chunk holds 8 rows
        rows.write(start, values[start:start + 16])
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "r.zarr" / "a")[:], values)
    np.testing.assert_array_equal(rows.read(0, 40), values)
    np.testing.assert_array_equal(rows._decode(2)[8:], np.full((8, 30), fill, dtype))  # Zarr's padding
    assert sorted(p.name for p in (tmp_path / "r.zarr" / "a" / "c").rglob("*") if p.is_file()) == ["0"] * 3
    rows.write(16, values[:16])  # a chunk written again is replaced
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "r.zarr" / "a")[16:32], values[:16])
    for start, block, problem in [(8, values[:16], "not one whole chunk"), (16, values[:8], "not one whole chunk"),
                                  (32, values[:16], "not one whole chunk"),
                                  (0, values[:16].astype("float64"), "float64"),
                                  (0, values[:16, :20], r"\(16, 20\)")]:
        with pytest.raises(ValueError, match=problem):
            rows.write(start, block)


def test_blosc_chunks_are_left_to_zarr_for_writing(small_survey):
    from mtopnet_core.stored_chunks import ChunkedRows

    rows = ChunkedRows.open(small_survey / "spectra.zarr" / "flux")  # a data set's spectra: Blosc
    assert rows is not None and not rows.writable
    with pytest.raises(ValueError, match="Blosc"):
        rows.write(0, rows.read(0, 16))
