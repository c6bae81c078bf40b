"""Inference throughput: preprocessing, the network, and ``predict_store`` end to end, with and
without MC dropout.

Usage::

    python benchmarks/bench_inference.py --data STORE --model MODEL_DIR [--n 6000] [--mc-passes 10]

Prints one Markdown table (spectra per second on this machine) for BENCHMARKS.md. Run on an
otherwise idle machine: every stage uses all cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mtopnet_core.batch import predict_store  # noqa: E402
from mtopnet_core.inference import load_trained_model  # noqa: E402
from mtopnet_core.preprocessing import preprocess  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2048, help="spectra for the single-stage timings")
    parser.add_argument("--mc-passes", type=int, default=10)
    args = parser.parse_args()

    dataset = open_dataset(args.data)
    trained = load_trained_model(args.model)
    n = min(args.n, len(dataset))
    data = dataset.read(slice(0, n))
    rows = []

    start = time.perf_counter()
    pre = preprocess(data["flux"], dataset.sky, data["error"], data["mask"], trained.preprocessing)
    rows.append(("preprocessing (one process)", n, time.perf_counter() - start))

    x = {"spectrum": pre.lines[..., None], "continuum": trained.standardiser.continuum(pre.continuum)}
    trained.forward.predict({k: v[:512] for k, v in x.items()}, batch_size=512, verbose=0)
    start = time.perf_counter()
    trained.forward.predict(x, batch_size=512, verbose=0)
    rows.append(("network forward pass (one process, all cores, batch 512)", n, time.perf_counter() - start))

    with tempfile.TemporaryDirectory() as tmp:
        for label, passes in (("`mtopnet predict` on the store, end to end", 0),
                              (f"`mtopnet predict --mc-passes {args.mc_passes}`", args.mc_passes)):
            start = time.perf_counter()
            predict_store(args.data, Path(tmp) / f"r{passes}", args.model, mc_passes=passes, progress=False)
            rows.append((label, len(dataset), time.perf_counter() - start))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"data {args.data} ({len(dataset)} spectra); model {args.model}")
    print("| stage | spectra | seconds | spectra/s |\n|---|---|---|---|")
    for label, count, seconds in rows:
        print(f"| {label} | {count} | {seconds:.1f} | {count / seconds:.0f} |")


if __name__ == "__main__":
    main()
