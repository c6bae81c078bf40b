"""Training throughput on this machine: training spectra per second, and what a paper-scale run would take.

Usage::

    python benchmarks/bench_training.py --data STORE [--rows 4096] [--epochs 3] [--loader-threads 1]
        [--steps-per-execution 1]

Trains a freshly built network (the paper's architecture, losses and batch size) for a few epochs
on the first ``--rows`` spectra of a mock store through the same input pipeline as ``mtopnet
train`` (inputs preprocessed once into a cache, then read batch by batch), and prints a Markdown
row for BENCHMARKS.md: the CPU and its vector extensions, the Keras backend, the time to build the
cache, spectra/s of the later epochs' training steps (the first epoch traces the step functions
and is not counted; no validation pass), and the hours per epoch and for the paper's 50-epoch
schedule at the paper's size (118 194 spectra, 70% trained on; add ~20% for the validation).
It also times one epoch of batches made alone (no network): the input pipeline's own ceiling.
Nothing is kept: the cache and the network live in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mtopnet_core.machine import cpu_description  # noqa: E402
from mtopnet_core.model import build_model, compile_model  # noqa: E402
from mtopnet_core.preprocessing import PreprocessingConfig  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402
from mtopnet_core.training import StoreBatches, TrainConfig, cache_inputs, fit_standardiser  # noqa: E402

PAPER_TRAINING_SPECTRA = round(0.7 * 118_194)
PAPER_EPOCHS = 50
"""The paper's learning-rate schedule decays over 50 epochs; early stopping ends runs near there."""


class EpochTimes(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a mock store with labels (mtopnet simulate)")
    parser.add_argument("--rows", type=int, default=4096, help="spectra trained on per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first is not counted)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loader-threads", type=int, default=1, help="threads making batches ahead")
    parser.add_argument("--steps-per-execution", type=int, default=1, help="steps between batch callbacks")
    args = parser.parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs: at least 2 (the first traces the step functions and is not counted)")

    dataset = open_dataset(args.data)
    rows = np.arange(min(args.rows, len(dataset)))
    config = TrainConfig(seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        start = time.perf_counter()
        cache = cache_inputs(dataset, os.path.join(tmp, "inputs.zarr"), PreprocessingConfig(), progress=False,
                             workers=os.cpu_count() or 1)
        cache_seconds = time.perf_counter() - start
        batches = StoreBatches(cache, dataset.catalogue, rows, fit_standardiser(cache, dataset.catalogue, rows),
                               config.batch_size, config.seed, drop_remainder=True, threads=args.loader_threads)
        start = time.perf_counter()
        for index in range(len(batches)):
            batches[index]
        made_alone = len(batches) * config.batch_size / (time.perf_counter() - start)
        model = compile_model(build_model(batch_size=config.batch_size), None, config.lr_start)
        model.steps_per_execution = args.steps_per_execution
        timer = EpochTimes()
        model.fit(batches, epochs=args.epochs, callbacks=[timer], verbose=0, shuffle=False)
    rate = len(batches) * config.batch_size / float(np.median(timer.seconds[1:]))
    epoch_hours = PAPER_TRAINING_SPECTRA / rate / 3600
    print(f"{date.today()}; {cpu_description()}; Keras backend {keras.backend.backend()}; "
          f"`python benchmarks/bench_training.py --data {args.data} --rows {len(rows)} --epochs {args.epochs} "
          f"--loader-threads {args.loader_threads} --steps-per-execution {args.steps_per_execution}`\n")
    print("| machine | backend | cache built (spectra/s) | batches made alone (spectra/s) "
          "| training spectra/s (steps only) | paper-size epoch | 50 epochs |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {cpu_description()} | {keras.backend.backend()} | {len(dataset) / cache_seconds:.0f} "
          f"| {made_alone:.0f} | {rate:.0f} | {epoch_hours:.2f} h | {PAPER_EPOCHS * epoch_hours:.1f} h |")


if __name__ == "__main__":
    main()
