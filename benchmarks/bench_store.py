"""Benchmark a prediction thread's input and output: reading a data set's spectra, writing a results folder's arrays.

Usage (from the repository root)::

    python benchmarks/bench_store.py --data STORE [--data ANOTHER_STORE ...] [--model MODEL] [--n 2048] [--rounds 3]

Reads ``--n`` spectra of each data set chunk by chunk (flux, error and mask, as
:meth:`mtopnet_core.store.Dataset.spectra` gives them to a prediction thread), in a thread of its
own, each data set in turn for ``--rounds`` rounds; the data sets may be the same survey written
with different codecs (a data set simulated before the flux and error were stored as byte-shuffled
LZ4 reads as it was written: compare it with ``mtopnet simulate`` of the same seed now). Then
writes the predictions of one chunk ``n / chunk`` times into a fresh results folder with
:func:`mtopnet_core.results.write_prediction_arrays` as prediction threads do (whole chunks
encoded and written outside Zarr), through Zarr with every chunk written (the code before
2026-12-04), and through Zarr's arrays as it opens them by default (a chunk that is all fill value
is skipped, after a test of every value), in turn.

Prints Markdown rows for ``BENCHMARKS.md``: codecs, disk per spectrum, and the best round's time
per spectrum (one core).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import zarr

from mtopnet_core.assets import shipped_model_dir
from mtopnet_core.batch import predict_rows
from mtopnet_core.machine import cpu_description  # noqa: E402
from mtopnet_core.results import ResultsWriter, quantise_line_probability, write_prediction_arrays
from mtopnet_core.store import open_dataset


def _codecs(store: Path, name: str) -> str:
    codecs = json.loads((store / "spectra.zarr" / name / "zarr.json").read_text())["codecs"]
    described = []
    for codec in codecs[1:]:  # after the bytes codec
        config = codec.get("configuration", {})
        described.append(" ".join([codec["name"], *(str(config[k]) for k in ("cname", "shuffle") if k in config)]))
    return ", ".join(described) or "none"


def _disk_bytes(store: Path, name: str) -> int:
    return sum(p.stat().st_size for p in (store / "spectra.zarr" / name).rglob("*") if p.is_file())


def _in_thread(work):
    # prediction threads are not the main thread (Blosc, for one, runs threads of its own only there)
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def _read_seconds(store: Path, n: int) -> float:
    dataset = open_dataset(store)
    chunk = dataset.metadata["chunk_size"]
    start = time.perf_counter()
    for first in range(0, n, chunk):
        dataset.spectra(slice(first, min(first + chunk, n)))
    return time.perf_counter() - start


WRITERS = {"here": "whole chunks written outside Zarr (`write_prediction_arrays`)",
           "zarr, every chunk": "through Zarr, group opened per block, every chunk written (before 2026-12-04)",
           "zarr, default": "through Zarr's default arrays (all-fill-value chunks tested and skipped)"}


def _write_seconds(folder: Path, predictions, times: int, writer: str) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    rows = len(predictions.names)
    ResultsWriter(folder, rows * times, {"input": {}}, chunk_rows=rows, embedding_size=predictions.embedding.shape[1])
    values = {"redshift_pdf": predictions.redshift_pdf, "embedding": predictions.embedding,
              "line_probability": quantise_line_probability(predictions.line_probability)}
    start = time.perf_counter()
    for block in range(times):
        if writer == "here":
            write_prediction_arrays(folder, block * rows, predictions)
            continue
        group = zarr.open_group(folder / "predictions.zarr", mode="r+")
        config = {"write_empty_chunks": writer == "zarr, every chunk"}
        for name, value in values.items():
            group[name].with_config(config)[block * rows:(block + 1) * rows] = value
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", required=True, help="data set (repeatable)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    stores = [path.resolve() for path in args.data]
    n = min([args.n, *(len(open_dataset(store)) for store in stores)])

    best = {store: float("inf") for store in stores}
    for _ in range(args.rounds):
        for store in stores:
            best[store] = min(best[store], _in_thread(lambda store=store: _read_seconds(store, n)))

    model = str((args.model or shipped_model_dir()).resolve())
    chunk = open_dataset(stores[0]).metadata["chunk_size"]
    predictions = predict_rows(model, str(stores[0]), 0, chunk)
    times = max(n // chunk, 1)
    written = dict.fromkeys(WRITERS, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for writer in written:
                seconds = _in_thread(lambda writer=writer: _write_seconds(Path(tmp) / "results", predictions,
                                                                          times, writer))
                written[writer] = min(written[writer], seconds)

    print(f"{datetime.date.today()}, {cpu_description()}; `python benchmarks/bench_store.py "
          f"{' '.join(f'--data {p}' for p in args.data)} --n {args.n} --rounds {args.rounds}`\n")
    print("| data set | flux, error codecs | disk per spectrum (flux+error) | read per spectrum (flux, error, mask) |")
    print("|---|---|---|---|")
    sizes = {store: len(open_dataset(store)) for store in stores}
    for store in stores:
        disk = (_disk_bytes(store, "flux") + _disk_bytes(store, "error")) / sizes[store]
        print(f"| {store.name} | {_codecs(store, 'flux')}; {_codecs(store, 'error')} | {disk / 1e3:.1f} kB "
              f"| {best[store] / n * 1e3:.3f} ms |")
    print(f"\n| results arrays, {times} blocks of {chunk} | write per spectrum |\n|---|---|")
    for writer, label in WRITERS.items():
        print(f"| {label} | {written[writer] / (times * chunk) * 1e3:.3f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
