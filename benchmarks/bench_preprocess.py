"""Benchmark preprocessing throughput (sky mask, 1000-channel running median, normalisation).

Usage (from the repository root)::

    python benchmarks/bench_preprocess.py --data DATASET --n 4096

Prints one Markdown table row for ``BENCHMARKS.md``: spectra per second in one process.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

from mtopnet_core.preprocessing import preprocess
from mtopnet_core.store import open_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    dataset = open_dataset(args.data)
    n = min(args.n, len(dataset))
    batches = [dataset.spectra(slice(i, min(i + args.batch, n))) for i in range(0, n, args.batch)]
    start = time.perf_counter()
    for spectra in batches:  # reading is excluded: this times the preprocessing alone
        preprocess(spectra)
    elapsed = time.perf_counter() - start
    print(f"| {datetime.date.today()} | 1 process | `{' '.join(sys.argv)}` | {n} | {n / elapsed:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
