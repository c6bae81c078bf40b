"""Batch prediction into a results folder: a store (locally and on a Dask cluster) and FITS files."""

import numpy as np
import pytest
from astropy.io import fits

pytest.importorskip("keras")

from mtopnet_core import grid  # noqa: E402
from mtopnet_core.batch import predict_fits, predict_store  # noqa: E402
from mtopnet_core.cli import main  # noqa: E402
from mtopnet_core.fits_io import export_dataset_fits  # noqa: E402
from mtopnet_core.inference import load_trained_model, predict  # noqa: E402
from mtopnet_core.results import ResultsError, open_results  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402


@pytest.fixture(scope="module")
def store_results(small_survey, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "r"
    predict_store(small_survey, out, tiny_model, progress=False)
    return out


def test_store_results_match_direct_prediction_row_by_row(small_survey, tiny_model, store_results):
    ds = open_dataset(small_survey)
    results = open_results(store_results)
    cat = results.catalogue
    assert len(cat) == len(ds) and str(cat["object_id"].dtype) == "string"
    assert cat["object_id"].tolist() == ds.catalogue["object_id"].tolist()
    assert np.allclose(cat["z_true"], ds.catalogue["z"]) and "t_exp_h" in cat and "row" in cat
    direct = predict(load_trained_model(tiny_model), ds.spectra(slice(16, 32)))
    assert np.allclose(results.redshift_pdf(slice(16, 32)), direct.redshift_pdf, atol=1e-6)
    assert np.allclose(cat["z_peak"][16:32], direct.summary.z_peak)
    assert np.allclose(results.embedding(np.arange(16, 32)), direct.embedding, atol=1e-5)
    # the line map is stored in steps of 1/255
    assert np.abs(results.line_probability(slice(16, 32)) - direct.line_probability).max() <= 0.5 / 255 + 1e-6
    assert results.metadata["status"] == "complete" and results.metadata["n_not_processed"] == 0


def test_line_probabilities_are_stored_as_rounded_steps_of_one_255th():
    from mtopnet_core.results import quantise_line_probability

    p = np.array([[0.0, 0.5 / 255, 1.5 / 255 + 1e-4, 0.5, 1.0, 1.2, -0.1, np.nan, np.inf, -np.inf]], np.float32)
    assert quantise_line_probability(p).tolist() == [[0, 0, 2, 128, 255, 255, 0, 0, 255, 0]]
    stored = quantise_line_probability(p)
    assert stored.dtype == np.uint8 and quantise_line_probability(stored) is stored


def test_results_folder_is_never_overwritten_by_accident(small_survey, tiny_model, store_results, tmp_path):
    with pytest.raises(ResultsError, match="holds results already"):
        predict_store(small_survey, store_results, tiny_model, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ResultsError, match="not an M-TOPnet results folder"):
        predict_store(small_survey, tmp_path, tiny_model, overwrite=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ResultsError, match="no results.json"):
        open_results(tmp_path)


def test_a_store_or_model_written_again_in_place_is_opened_again(small_survey, tiny_model, tmp_path):
    """A long-lived process (the app's server) keeps the data sets and models it opened; one written
    again at the same path is opened again, never predicted from what was there before."""
    import json
    import shutil

    from mtopnet_core.simulate.survey import simulate_survey

    from conftest import SMALL

    store, model = tmp_path / "store", tmp_path / "model"
    shutil.copytree(small_survey, store)
    shutil.copytree(tiny_model, model)
    before = open_results(predict_store(store, tmp_path / "a", model, progress=False)).catalogue
    simulate_survey(store, 20, 8, SMALL, workers=1, overwrite=True, progress=False)
    truth = open_dataset(store).catalogue
    after = open_results(predict_store(store, tmp_path / "b", model, progress=False)).catalogue
    assert len(before) == 40 and after["object_id"].tolist() == truth["object_id"].tolist()
    assert np.allclose(after["z_true"], truth["z"])

    # the same model folder with log M* standardised 1 dex higher predicts 1 dex more
    meta = json.loads((model / "model.json").read_text())
    meta["standardiser"]["log_mstar_mean"] += 1.0
    (model / "model.json").write_text(json.dumps(meta))
    shifted = open_results(predict_store(store, tmp_path / "c", model, progress=False)).catalogue
    assert np.allclose(shifted["log_mstar_pred"], after["log_mstar_pred"] + 1.0, atol=1e-4)


@pytest.mark.multiprocess
def test_dask_cluster_and_one_process_give_the_same_results(small_survey, tiny_model, store_results, tmp_path):
    # store_results: two local prediction threads writing their own chunks of the arrays
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        predict_store(small_survey, tmp_path / "r", tiny_model, scheduler=client, progress=False)
        assert len(client.scheduler_info()["workers"]) == 2
    predict_store(small_survey, tmp_path / "one", tiny_model, workers=1, progress=False)
    local = open_results(store_results)
    for other in (open_results(tmp_path / "r"), open_results(tmp_path / "one")):
        assert other.catalogue["object_id"].tolist() == local.catalogue["object_id"].tolist()
        assert np.allclose(other.redshift_pdf(), local.redshift_pdf(), atol=1e-6)
        assert np.abs(other.line_probability() - local.line_probability()).max() <= 1 / 255 + 1e-6
        assert np.allclose(other.embedding(), local.embedding(), atol=1e-5)
        assert np.allclose(other.catalogue["log_mstar_pred"], local.catalogue["log_mstar_pred"], atol=1e-5)


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.multiprocess)])
def test_fits_batch_reports_bad_files_and_predicts_the_rest(workers, small_survey, tiny_model, store_results, tmp_path,
                                                            monkeypatch):
    """In this process, and with two reader processes (chunks of 2 files here: the first is read here, the
    other two by the readers, as for files that read slowly)."""
    from mtopnet_core import batch

    monkeypatch.setattr(batch, "CHUNK_ROWS", 2)
    monkeypatch.setattr(batch, "SLOW_READ_SECONDS", 0.0)
    expected = []  # how many spectra the sort-median's loader is told to expect
    monkeypatch.setattr(batch.SORT_MEDIAN, "expect", expected.append)
    ds = open_dataset(small_survey)
    good = export_dataset_fits(small_survey, tmp_path / "in", first=3)
    corrupt = tmp_path / "in" / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    no_error = tmp_path / "in" / "no_error.fits"
    wave = grid.wavelength_grid()
    columns = [fits.Column(name="WAVE", format=f"{wave.size}D", unit="Angstrom", array=wave[None]),
               fits.Column(name="FLUX", format=f"{wave.size}E", array=ds.read(slice(0, 1))["flux"])]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(no_error)
    paths = [good[0], corrupt, good[1], no_error, good[2]]
    out = predict_fits(paths, tmp_path / "r", tiny_model, ds.sky, workers=workers, progress=False)
    results = open_results(out)
    assert expected == [5]
    cat = results.catalogue
    problems = cat["problem"].tolist()
    assert problems[0] == problems[2] == problems[4] == ""
    assert "corrupt.fits" in problems[1] and "no error array" in problems[3] and "no_error.fits" in problems[3]
    assert np.isnan(results.redshift_pdf(slice(1, 2))).all() and np.isnan(cat["z_peak"][3])
    assert results.metadata["n_not_processed"] == 2
    # the good files give the store's predictions for the same objects
    store = open_results(store_results)
    assert cat["object_id"][[0, 2, 4]].tolist() == store.catalogue["object_id"][:3].tolist()
    assert np.allclose(results.redshift_pdf(np.array([0, 2, 4])), store.redshift_pdf(slice(0, 3)), atol=1e-5)


def test_cli_predict_and_its_one_line_errors(small_survey, tiny_model, tmp_path, capsys, monkeypatch):
    from mtopnet_core import allocator

    asked = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: asked.append(True))
    assert main(["predict", "--input", str(small_survey), "--out", str(tmp_path / "r"),
                 "--model", str(tiny_model), "--quiet"]) == 0
    assert len(open_results(tmp_path / "r").catalogue) == 40
    assert asked == [True]  # the command keeps freed memory (tests/test_allocator.py)
    capsys.readouterr()
    assert main(["predict", "--input", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"),
                 "--model", str(tiny_model)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((tiny_model / "model.json").read_text())
    (broken / "model.keras").write_bytes(b"not a zip")
    assert main(["predict", "--input", str(small_survey), "--out", str(tmp_path / "y"), "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "model.keras" in err and err.strip().count("\n") == 0


def test_result_blocks_are_written_whole_or_through_zarr_and_read_back_the_same(small_survey, tiny_model, tmp_path):
    # whole chunks (in pieces, as the split first chunk, or the last, shorter one) are encoded by
    # ChunkedRows.write, other rows go through Zarr: the results read back are the predictions
    from mtopnet_core.results import ResultsWriter, write_prediction_arrays

    trained = load_trained_model(tiny_model)
    spectra = open_dataset(small_survey).spectra(slice(None))
    writer = ResultsWriter(tmp_path / "r", 40, {}, chunk_rows=16, embedding_size=trained.embedding_size)
    blocks = {(0, 5): None, (5, 16): None, (16, 24): None, (24, 32): None, (32, 40): None}
    for start, stop in blocks:
        blocks[start, stop] = predict(trained, spectra[start:stop])
    write_prediction_arrays(writer.path, 0, [blocks[0, 5], blocks[5, 16]])
    for start, stop in ((24, 32), (16, 24), (32, 40)):
        write_prediction_arrays(writer.path, start, blocks[start, stop])
    import zarr

    stored = zarr.open_group(writer.path / "predictions.zarr")
    for name in ("redshift_pdf", "embedding"):
        np.testing.assert_array_equal(stored[name][:], np.concatenate([getattr(p, name) for p in blocks.values()]))
    lines = np.concatenate([p.line_probability for p in blocks.values()])
    assert np.abs(stored["line_probability"][:] / 255 - lines).max() <= 0.5 / 255 + 1e-6
    assert len(list((writer.path / "predictions.zarr" / "embedding" / "c").iterdir())) == 3


def test_fits_chunks_are_read_once_and_at_most_ahead_chunks_before_they_are_asked_for():
    """``predict_fits``'s read-ahead: every chunk read once (pieces of a chunk share its read), the
    next ``ahead`` chunks started when one is asked for, a chunk forgotten once written."""
    from mtopnet_core import batch
    from mtopnet_core.spectra import Spectra

    chunks = [(0, 4), (4, 8), (8, 12), (12, 16), (16, 18)]
    asked = []

    def read(start, stop):
        asked.append(start)
        rows = np.arange(start, stop, dtype=np.float32)
        spectra = Spectra(flux=rows[:, None] * np.ones((1, grid.N_CHANNELS), np.float32),
                          sky=np.zeros(grid.N_CHANNELS), names=[f"s{i}" for i in range(start, stop)])
        return batch._finished((spectra, [f"p{i}" for i in range(start, stop)]))

    reads = batch._ReadAhead(chunks, read, ahead=2)
    spectra, problems = reads.rows(0, 2)  # a piece of the first chunk
    assert asked == [0, 4, 8] and spectra.names == ("s0", "s1") and problems == ["p0", "p1"]
    spectra, problems = reads.rows(2, 4)
    assert asked == [0, 4, 8] and spectra.flux[:, 0].tolist() == [2, 3] and problems == ["p2", "p3"]
    assert reads.rows(4, 8)[0].names == ("s4", "s5", "s6", "s7") and asked == [0, 4, 8, 12]
    reads.drop(0)
    reads.drop(4)
    assert sorted(reads._reads) == [8, 12]
    assert reads.rows(16, 18)[0].names == ("s16", "s17") and asked == [0, 4, 8, 12, 16]
    asked.clear()
    batch._ReadAhead(chunks, read, ahead=1).start()
    assert asked == [0, 4]
