"""Inference throughput, side by side in one run: the raw network under TensorFlow and ONNX
Runtime, preprocessing, and whole ``mtopnet predict`` commands (optionally also from another
checkout, for "today's rate" ratios).

Usage::

    python benchmarks/bench_inference.py --data STORE [--model MODEL_DIR] [--n 2048]
        [--mc-passes 10] [--baseline-src OLD_CHECKOUT [--baseline-model OLD_MODEL_DIR]] [--repeat 1]

The whole command is timed as a user sees it (a subprocess, from its start to its exit), with
the time until its first chunk of results is on disk (the first catalogue part). Ratios are
what matters (issue 11): every stage runs in this one invocation, on the same machine, and each
round of whole commands is compared with the raw TensorFlow rate measured again just before it.
Prints Markdown rows for BENCHMARKS.md, with the CPU and its vector extensions. Run on an otherwise
idle machine: every stage uses all cores.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mtopnet_core.assets import shipped_model_dir  # noqa: E402
from mtopnet_core.inference import load_trained_model  # noqa: E402
from mtopnet_core.machine import cpu_description  # noqa: E402
from mtopnet_core.preprocessing import SORT_MEDIAN, preprocess  # noqa: E402
from mtopnet_core.runtime import KerasNetwork  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402

PREPROCESS_ROWS = 256
"""Spectra per preprocessing call in the single-stage timing: a stored chunk, what `mtopnet predict` reads."""


def rate(call, x: dict, repeat: int = 2) -> float:
    """Spectra per second of ``call(x)``, best of ``repeat`` after one warm-up call."""
    n = len(x["continuum"])
    call({k: v[:128] for k, v in x.items()})
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        call(x)
        best = min(best, time.perf_counter() - start)
    return n / best


def whole_command(data: Path, model: Path, out: Path, mc_passes: int, source: Path | None) -> tuple[float, float]:
    """(seconds to the first chunk of results on disk, seconds for the whole command)."""
    # the console script's entry (`mtopnet`), or `main` in a baseline checkout that predates it
    code = "import sys; from mtopnet_core import cli; cli.run() if hasattr(cli, 'run') else sys.exit(cli.main())"
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    argv = [sys.executable, "-c", code, "predict", "--input", str(data), "--out", str(out), "--model", str(model),
            "--quiet", "--mc-passes", str(mc_passes)]
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=source or Path.cwd(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    first = None
    while process.poll() is None:
        if first is None and (out / "parts").is_dir() and any((out / "parts").glob("*.parquet")):
            first = time.perf_counter() - start
        time.sleep(0.02)
    total = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError(f"predict failed: {process.stderr.read()[-2000:]}")
    return (first if first is not None else total), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=2048, help="spectra for the single-stage timings")
    parser.add_argument("--mc-passes", type=int, default=0, help="also time the command with MC dropout")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="another checkout whose `mtopnet predict` to time beside this one's")
    parser.add_argument("--baseline-model", type=Path, default=None,
                        help="the model folder the baseline predicts with (default: --model), e.g. the "
                             "one that checkout shipped")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the whole commands, interleaved (the best is shown, and the mean)")
    args = parser.parse_args()
    model = (args.model or shipped_model_dir()).resolve()

    dataset = open_dataset(args.data)
    onnx_model, keras_model = load_trained_model(model), load_trained_model(model, runtime="keras")
    n = min(args.n, len(dataset))
    spectra = dataset.spectra(slice(0, n))
    # the sort-median compiles in the background and preprocess uses the double heap until then:
    # the rate is the steady one (a whole command below pays the compilation as a user does)
    if not SORT_MEDIAN.wait():
        raise SystemExit("the sort-median could not be compiled")
    start = time.perf_counter()
    # in chunks as `mtopnet predict` reads them: one call on thousands of rows pays for its page faults
    parts = [preprocess(spectra[i:i + PREPROCESS_ROWS], onnx_model.preprocessing)
             for i in range(0, n, PREPROCESS_ROWS)]
    rows = [(f"preprocessing (one process, one core, {PREPROCESS_ROWS} at a time)", n,
             n / (time.perf_counter() - start))]
    x = {"spectrum": np.concatenate([part.lines for part in parts])[..., None],
         "continuum": onnx_model.standardiser.continuum(np.concatenate([part.continuum for part in parts]))}
    tf_network = KerasNetwork(keras_model.forward, batch_size=128)  # a traced tf.function on TensorFlow
    tf_rate = rate(tf_network, x)
    rows.append(("network, raw TensorFlow (traced, batch 128, all cores)", n, tf_rate))
    if onnx_model.runtime == "onnxruntime":
        rows.append(("network, ONNX Runtime (exported, all cores)", n, rate(onnx_model.network, x)))

    baseline_model = (args.baseline_model or model).resolve()
    commands = [("this checkout", None, model)] + ([(f"baseline {args.baseline_src}, model {baseline_model.name}",
                                                     args.baseline_src, baseline_model)] if args.baseline_src else [])
    passes = [0] + ([args.mc_passes] if args.mc_passes else [])
    runs = [(label, source, command_model, mc) for label, source, command_model in commands for mc in passes]
    times = {run: [] for run in runs}
    round_tf_rates = []
    with tempfile.TemporaryDirectory() as tmp:
        # rounds interleave the commands: this machine's speed drifts by 10-25% within minutes, the
        # raw TensorFlow rate with it, so each round measures it again beside its commands
        for attempt in range(args.repeat):
            round_tf_rates.append(rate(tf_network, x))
            for i, run in enumerate(runs):
                label, source, command_model, mc = run
                out = Path(tmp) / f"{i}-{attempt}"
                times[run].append(whole_command(args.data.resolve(), command_model, out, mc, source))
    for run in runs:
        label, _, _, mc = run
        best = min(times[run], key=lambda t: t[1])
        what = f"`mtopnet predict`{f' --mc-passes {mc}' if mc else ''}, whole command ({label})"
        rows.append((what, len(dataset), len(dataset) / best[1], best, np.mean([t[1] for t in times[run]])))

    print(f"{datetime.date.today()}: {cpu_description()}; data {args.data} ({len(dataset)} spectra); "
          f"model {model.name}")
    print("| stage | spectra | spectra/s | x raw TF | first chunk after | whole command |\n|---|---|---|---|---|---|")
    for label, count, per_second, *timed in rows:
        first, total = (f"{timed[0][0]:.1f} s", f"{timed[0][1]:.1f} s (mean {timed[1]:.1f})") if timed else ("", "")
        print(f"| {label} | {count} | {per_second:.0f} | {per_second / tf_rate:.2f} | {first} | {total} |")
    print(f"\nRaw TensorFlow in each round: {', '.join(f'{r:.0f}' for r in round_tf_rates)} spectra/s. "
          "Each command against the raw TensorFlow rate of its own round:")
    for run in runs:
        label, _, _, mc = run
        ratios = [len(dataset) / total / tf for (_, total), tf in zip(times[run], round_tf_rates, strict=True)]
        print(f"- {label}{f', --mc-passes {mc}' if mc else ''}: {', '.join(f'{r:.2f}x' for r in ratios)} "
              f"(median {np.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
