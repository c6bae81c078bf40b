"""The one loop that keeps chunks in flight (survey, predict, training cache) and the progress bar."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mtopnet_core.parallel import progress_bar, run_windowed


class _Counting:
    """Work that records how many calls were submitted and not yet collected."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outstanding = 0
        self.most = 0

    def submitted(self) -> None:
        with self.lock:
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)

    def collected(self) -> None:
        with self.lock:
            self.outstanding -= 1


def test_every_item_is_done_once_and_the_window_is_never_exceeded():
    counting = _Counting()

    class Pool(ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            counting.submitted()
            return super().submit(fn, *args, **kwargs)

    results = {}

    def collect(item, value):
        counting.collected()
        results[item] = value

    def square(start, stop):
        time.sleep(0.002 * (start % 3))  # finish out of order
        return start * stop

    items = [(k, k + 1) for k in range(40)]
    with Pool(4) as pool:
        run_windowed(pool, square, iter(items), collect, window=3)
    assert results == {item: item[0] * item[1] for item in items}
    assert counting.most == 3


def test_an_error_cancels_the_items_not_started():
    started = []

    def fails_on_two(k):
        started.append(k)
        if k == 2:
            raise RuntimeError("chunk 2 is broken")
        time.sleep(0.01)
        return k

    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="chunk 2"):
        run_windowed(pool, fails_on_two, [(k,) for k in range(100)], lambda *_: None, window=4)
    assert len(started) < 10


def test_a_window_below_one_is_refused():
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="window"):
        run_windowed(pool, abs, [(1,)], lambda *_: None, window=0)


def test_progress_bar_counts_and_can_be_silent(capsys):
    bar = progress_bar(10, desc="testing", initial=4, show=True)
    bar.update(6)
    assert bar.n == 10
    bar.close()
    assert "testing" in capsys.readouterr().err
    quiet = progress_bar(10, desc="quiet", show=False)
    quiet.update(3)
    quiet.close()
    assert "quiet" not in capsys.readouterr().err
