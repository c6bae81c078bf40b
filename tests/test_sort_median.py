"""The sort-median equals bottleneck's double heap exactly, on spectra and on hard cases."""

import logging

import numpy as np
import pytest

from mtopnet_core import grid, preprocessing
from mtopnet_core.preprocessing import SORT_MEDIAN, SortMedianLoader, heap_median_rows, running_median
from mtopnet_core.sort_median import running_median_rows
from mtopnet_core.store import open_dataset


def _random_rows(rng, n_rows, n, masked_fraction):
    values = rng.normal(size=(n_rows, n)).astype(np.float32)
    values[rng.random(values.shape) < masked_fraction] = np.nan
    values[0] = np.round(values[0] * 2) / 2  # many ties
    values[1, : n // 2] = np.nan  # a masked half
    values[2] = np.nan  # nothing to take a median of
    values[3, n // 3] = np.float32(-0.0)
    if n_rows > 5:  # infinities sort to the ends of the ranks
        values[4, ::7], values[5, ::5] = np.inf, -np.inf
    return values


@pytest.mark.parametrize(("n", "window", "masked_fraction"), [
    (50, 7, 0.3), (13, 8, 0.5), (1000, 100, 0.0), (3000, 1000, 0.3), (2000, 1000, 0.95), (5, 10, 0.5), (1, 1, 0.0),
])
def test_equals_the_double_heap(n, window, masked_fraction):
    values = _random_rows(np.random.default_rng(n + window), 8, n, masked_fraction)
    expected = heap_median_rows(values, window)
    got = running_median_rows(values, window)
    assert got.dtype == np.float32 and got.shape == values.shape
    assert np.array_equal(got, expected, equal_nan=True)


def test_equals_the_double_heap_on_stored_spectra(small_survey):
    ds = open_dataset(small_survey)
    data = ds.read(slice(0, 16))
    masked = preprocessing.channel_mask(data["flux"], ds.sky, data["error"], data["mask"])
    values = np.where(masked, np.nan, data["flux"]).astype(np.float32)
    heap = [heap_median_rows(values[:, part], 1000) for part in grid.contiguous_segments()]
    assert SORT_MEDIAN.wait()
    assert np.array_equal(running_median(values, 1000), np.concatenate(heap, axis=1), equal_nan=True)


def test_the_median_follows_the_input():
    ramp = np.arange(3000, dtype=np.float32)[None, :]
    medians = running_median_rows(ramp, 101)
    # inside the row the median of a ramp is its centre; at the ends the clipped window's
    assert np.array_equal(medians[0, 50:-50], ramp[0, 50:-50])
    assert medians[0, 0] == 25.0 and medians[0, -1] == 2999 - 25


def test_a_loader_that_cannot_compile_leaves_the_double_heap(monkeypatch, caplog):
    def broken(*_):
        raise RuntimeError("no compiler")

    monkeypatch.setattr("mtopnet_core.sort_median.running_median_rows", broken)
    loader = SortMedianLoader()
    with caplog.at_level(logging.WARNING):
        assert not loader.wait()
    assert loader.get(256) is None and "no compiler" in caplog.text


def test_numba_is_loaded_only_once_a_process_has_taken_enough_medians():
    loader = SortMedianLoader(after=300)
    assert loader.get(256) is None and loader._thread is None  # short jobs: the double heap, nothing loaded
    loader.get(256)  # past 300 spectra: loading in a thread
    assert loader._thread is not None and loader.wait()
    assert loader.get(256) is running_median_rows


def test_a_job_known_to_be_long_starts_loading_at_once():
    loader = SortMedianLoader(after=300)
    loader.expect(300)  # not longer than `after`: nothing loaded
    assert loader._thread is None
    loader.expect(301)
    assert loader._thread is not None and loader.wait() and loader.get(1) is running_median_rows


def test_predict_store_tells_the_loader_how_many_spectra_it_will_preprocess(small_survey, tiny_model, tmp_path,
                                                                            monkeypatch):
    from mtopnet_core import batch

    expected = []
    monkeypatch.setattr(batch.SORT_MEDIAN, "expect", expected.append)
    batch.predict_store(small_survey, tmp_path / "r", tiny_model, workers=1, progress=False)
    assert expected == [40]
