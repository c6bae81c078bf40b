"""Reduced precision for the exported network: int8 (ONNX Runtime quantisation) against float32.

Usage::

    python benchmarks/bench_precision.py --data STORE [--model MODEL_DIR] [--n 512]

Quantises the model folder's ``model.onnx`` twice into a temporary folder: dynamically (int8
weights, activations quantised on the fly) and statically (QDQ, int8 weights and uint8
activations calibrated on 256 of the spectra), then runs each on the same preprocessed spectra
(ONNX Runtime, CPU, one session on every core, called per ``ONNX_RUN`` spectra as
prediction does) and prints the rate against float32's and how far the outputs
move: the largest PDF difference, the share of redshift peaks that move by more than 0.01, the
largest change of log M* (standardised units). Issue 11 keeps a reduced precision only if it is
faster and the paper's metrics do not move.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from mtopnet_core import grid  # noqa: E402
from mtopnet_core.assets import shipped_model_dir  # noqa: E402
from mtopnet_core.inference import load_trained_model  # noqa: E402
from mtopnet_core.machine import cpu_description  # noqa: E402
from mtopnet_core.preprocessing import preprocess  # noqa: E402
from mtopnet_core.runtime import ONNX_RUN  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _timed(path: Path, x: dict, repeat: int = 3) -> tuple[float, dict]:
    """Best rate (spectra/s) over ``repeat`` runs, and the outputs."""
    session, n = _session(path), len(x["continuum"])
    names = [o.name for o in session.get_outputs()]  # the graph's own: a comb head's line map is made in NumPy
    best, out = np.inf, {}
    for _ in range(repeat):
        start, parts = time.perf_counter(), []
        for first in range(0, n, ONNX_RUN):
            parts.append(session.run(names, {k: v[first:first + ONNX_RUN] for k, v in x.items()}))
        best = min(best, time.perf_counter() - start)
        out = {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}
    return n / best, out


def main() -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a store to take spectra from")
    parser.add_argument("--model", type=Path, default=None, help="model folder with model.onnx (default: shipped)")
    parser.add_argument("--n", type=int, default=512, help="spectra to time")
    args = parser.parse_args()
    folder = args.model or shipped_model_dir()
    trained = load_trained_model(folder)
    pre = preprocess(open_dataset(args.data).spectra(slice(0, args.n)), trained.preprocessing)
    x = {"spectrum": pre.lines[pre.usable][..., None].astype(np.float32),
         "continuum": trained.standardiser.continuum(pre.continuum[pre.usable]).astype(np.float32)}

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{k: v[i:i + ONNX_RUN] for k, v in x.items()} for i in range(0, 256, ONNX_RUN)])

        def get_next(self):
            return next(self.batches, None)

    print(f"{date.today()}, {cpu_description()}, {len(x['continuum'])} spectra of "
          f"{args.data}, model {folder.name}\n")
    print("| precision | spectra/s | vs float32 | max PDF change | peaks moved > 0.01 | max log M* change |")
    print("|---|---|---|---|---|---|")
    reference = folder / "model.onnx"
    rate32, out32 = _timed(reference, x)
    print(f"| float32 | {rate32:.0f} | 1.00 | 0 | 0 | 0 |")
    with tempfile.TemporaryDirectory() as scratch:
        dynamic, static = Path(scratch) / "dynamic.onnx", Path(scratch) / "static.onnx"
        quantize_dynamic(reference, dynamic, weight_type=QuantType.QInt8)
        quantize_static(reference, static, Calibration(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        for label, path in (("int8, dynamic", dynamic), ("int8 weights, uint8 activations, static QDQ", static)):
            rate, out = _timed(path, x)
            moved = np.abs(np.argmax(out["redshift"], 1) - np.argmax(out32["redshift"], 1)) * grid.Z_BIN_WIDTH
            print(f"| {label} | {rate:.0f} | {rate / rate32:.2f} | "
                  f"{np.abs(out['redshift'] - out32['redshift']).max():.3f} | {(moved > 0.01).mean():.3f} | "
                  f"{np.abs(out['log_mstar'] - out32['log_mstar']).max():.2f} |")


if __name__ == "__main__":
    main()
