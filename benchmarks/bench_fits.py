"""Benchmark reading FITS spectra: NumPy's reader of plain tables against astropy's HDU objects.

Usage (from the repository root)::

    python benchmarks/bench_fits.py --folder FITS_FOLDER [--n 400] [--rounds 3]

(a folder of files: ``mtopnet export-fits --data test10k --out FOLDER --first 2000``). Reads the
same files with :func:`mtopnet_core.fits_io.read_fits_batch` as it is (plain tables by NumPy,
:mod:`mtopnet_core.fits_tables`) and with the plain reader turned off (every file through
astropy's HDU objects), alternately in one process, checks that both give the same spectra, and
prints Markdown rows for ``BENCHMARKS.md`` (the best round of each, per file, one core).
"""

from __future__ import annotations

import argparse
import datetime
import time
from unittest import mock

import numpy as np

from mtopnet_core import fits_io, grid
from mtopnet_core.batch import fits_paths
from mtopnet_core.machine import cpu_description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    paths = fits_paths(args.folder)[:args.n]
    if not paths:
        raise SystemExit(f"{args.folder}: no FITS files")
    sky = np.zeros(grid.N_CHANNELS)  # reading does not look at it
    fits_io.read_fits_batch(paths[:5], sky)  # imports, unit strings
    readers = {"NumPy for plain tables (this code)": lambda: fits_io.read_fits_batch(paths, sky),
               "astropy's HDU objects for every file": lambda: _astropy_only(paths, sky)}
    seconds = {name: [] for name in readers}
    spectra = {}
    for _ in range(args.rounds):
        for name, read in readers.items():
            start = time.perf_counter()
            spectra[name] = read()
            seconds[name].append(time.perf_counter() - start)
    (ours, _), (theirs, _) = spectra.values()
    same = all(np.array_equal(getattr(ours, k), getattr(theirs, k), equal_nan=True) for k in ("flux", "error", "mask"))
    print(f"{datetime.date.today()}: {cpu_description()}; {len(paths)} files of {args.folder}, "
          f"best of {args.rounds} rounds; the same spectra: {same}")
    print("| reader | ms per file | files/s (one core) |\n|---|---|---|")
    for name, times in seconds.items():
        best = min(times) / len(paths)
        print(f"| {name} | {1e3 * best:.2f} | {1 / best:.0f} |")
    return 0 if same else 1


def _astropy_only(paths, sky):
    with mock.patch.object(fits_io, "plain_table", lambda *args, **kwargs: None):
        return fits_io.read_fits_batch(paths, sky)


if __name__ == "__main__":
    raise SystemExit(main())
