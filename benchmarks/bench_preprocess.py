"""Benchmark preprocessing (sky mask, 1000-channel running median, normalisation), one process.

Usage (from the repository root)::

    python benchmarks/bench_preprocess.py --data DATASET --n 2048 --rounds 3

Times the running median by bottleneck's double heap and by the sort-median
(:mod:`mtopnet_core.sort_median`: each row ranked once, the window a bitset of ranks),
alternately in the same process, alone and within the whole preprocessing (reading excluded),
checks that both give the same network inputs, and prints Markdown table rows for
``BENCHMARKS.md`` (the best round of each).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import numpy as np

from mtopnet_core import grid
from mtopnet_core.preprocessing import SORT_MEDIAN, channel_mask, heap_median_rows, preprocess
from mtopnet_core.store import open_dataset


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    dataset = open_dataset(args.data)
    n = min(args.n, len(dataset))
    batches = [dataset.spectra(slice(i, min(i + args.batch, n))) for i in range(0, n, args.batch)]
    medians_in = [[np.where(channel_mask(s.flux, s.sky, s.error, s.mask), np.nan, s.flux)[:, part].astype(np.float32)
                   for part in grid.contiguous_segments()] for s in batches]
    if not SORT_MEDIAN.wait():
        raise SystemExit("the sort-median could not be compiled")
    sort_median = SORT_MEDIAN.median_rows
    methods = {"double heap (bottleneck)": heap_median_rows, "sort-median (numba)": sort_median}
    median_s = {name: [] for name in methods}
    preprocess_s = {name: [] for name in methods}
    outputs = {}
    for _ in range(args.rounds):
        for name, median_rows in methods.items():
            median_s[name].append(_seconds(lambda f=median_rows: [f(part, 1000) for parts in medians_in
                                                                   for part in parts]))
            # what preprocess uses: the double heap while the loader holds none
            SORT_MEDIAN.median_rows = None if median_rows is heap_median_rows else median_rows
            start = time.perf_counter()
            outputs[name] = [preprocess(spectra) for spectra in batches]
            preprocess_s[name].append(time.perf_counter() - start)
    SORT_MEDIAN.median_rows = sort_median
    heap, sort = outputs.values()
    same = all(np.array_equal(x.lines, y.lines) and np.array_equal(x.continuum, y.continuum)
               for x, y in zip(heap, sort, strict=True))
    print(f"{datetime.date.today()}: `{' '.join(sys.argv)}`, {n} spectra, the best of {args.rounds} rounds; "
          f"the two give {'identical' if same else 'DIFFERENT'} network inputs")
    print("| running median | median alone, ms per spectrum | whole preprocessing, ms per spectrum | spectra/s |")
    print("|---|---|---|---|")
    for name in methods:
        print(f"| {name} | {1e3 * min(median_s[name]) / n:.3f} | {1e3 * min(preprocess_s[name]) / n:.3f} "
              f"| {n / min(preprocess_s[name]):.0f} |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
