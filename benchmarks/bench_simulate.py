"""Benchmark the mock-survey generator: spectra per second, peak memory, size on disk.

Usage (from the repository root)::

    python benchmarks/bench_simulate.py --n 118194 --workers 2 --out /tmp/bench_survey

Prints one Markdown table row for ``BENCHMARKS.md``. Peak memory is the maximum resident set of
the main process and of the largest worker (``getrusage``), so it shows whether memory grows
with N. The output folder is deleted afterwards unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

from mtopnet_core.simulate.survey import simulate_survey


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_survey"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    start = time.perf_counter()
    simulate_survey(args.out, args.n, args.seed, workers=args.workers, progress=True)
    elapsed = time.perf_counter() - start
    size_gb = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 1e9
    main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cpu = platform.processor() or platform.machine()
    print(f"| {datetime.date.today()} | {cpu}, {args.workers} workers | `{' '.join(sys.argv)}` | "
          f"{args.n} | {elapsed:.0f} s | {args.n / elapsed:.0f} | {main_mb:.0f} MB main, "
          f"{worker_mb:.0f} MB per worker | {size_gb:.2f} GB |")
    if not args.keep:
        shutil.rmtree(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
