"""Forward rate of exported models side by side: ONNX Runtime on the same preprocessed spectra, and
the NumPy MC-dropout heads per pass, the models taking turns so that load on the machine hits all alike.

Usage::

    python benchmarks/bench_forward.py --data STORE --models MODEL_DIR [MODEL_DIR ...] [--n 1024] [--repeat 3]

Prints one Markdown row per model (medians over the repeats) with the CPU and its vector extensions.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np

from mtopnet_core.inference import load_trained_model
from mtopnet_core.machine import cpu_description  # noqa: E402
from mtopnet_core.preprocessing import preprocess
from mtopnet_core.runtime import OUTPUT_NAMES
from mtopnet_core.store import open_dataset

MC_PASSES = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a store to take spectra from")
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="exported model folders")
    parser.add_argument("--n", type=int, default=1024, help="spectra per forward call")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    models = {path: load_trained_model(path, runtime="onnx") for path in args.models}
    spectra = open_dataset(args.data).spectra(slice(0, args.n))
    pre = preprocess(spectra, next(iter(models.values())).preprocessing)
    forward = {path: [] for path in models}
    mc = {path: [] for path in models}
    for _ in range(args.repeat):
        for path, model in models.items():
            x = {"spectrum": pre.lines[..., None], "continuum": model.standardiser.continuum(pre.continuum)}
            start = time.perf_counter()
            model.network(x)
            forward[path].append(len(pre.lines) / (time.perf_counter() - start))
            if model.mc_heads is not None:
                once = model.network(x, outputs=[*OUTPUT_NAMES, *model.mc_heads.inputs])
                start = time.perf_counter()
                model.mc_heads.passes(once, MC_PASSES, seed=0)
                mc[path].append(len(pre.lines) * MC_PASSES / (time.perf_counter() - start))

    print(f"{datetime.date.today()}, {cpu_description()}, {args.n} spectra of {args.data}, {args.repeat} turns\n")
    print("| model | ONNX Runtime forward, spectra/s | NumPy MC heads, spectrum-passes/s |\n|---|---|---|")
    for path in models:
        heads = f"{np.median(mc[path]):.0f}" if mc[path] else "-"
        print(f"| {path.name} | {np.median(forward[path]):.0f} | {heads} |")


if __name__ == "__main__":
    main()
