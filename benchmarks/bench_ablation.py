"""The paper's ablations (section 4): the multi-task model against the single-task (redshift only),
the no-M*/SFR (redshift + line locations) and the no-line-location (redshift + M* + SFR) variants,
trained alike and scored on one test set.

Usage::

    python benchmarks/bench_ablation.py --data TRAIN_STORE --test TEST_STORE --out DIR [--epochs 12] [--seed 0]
        [--variants multi_task single_task no_mass_sfr no_lines] [--line-head comb]

Each variant trains in ``DIR/<variant>`` (resumable: run the command again after an interruption),
predicts the test store into ``DIR/<variant>/results`` and is scored there. Prints one Markdown table
for BENCHMARKS.md and writes ``DIR/ablation.json``. All variants share the data, split, seed, epochs
and learning-rate schedule; only the task weights differ. ``--line-head`` chooses the line-location
head of every variant (the comb, or the paper's MLP); variants that train it are also scored on it
(:func:`~mtopnet_core.evaluation.line_head_scores`, 1 000 test spectra).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mtopnet_core.batch import predict_store  # noqa: E402
from mtopnet_core.evaluation import (  # noqa: E402
    CATASTROPHIC_DZ,
    dataset_line_signal_to_noise,
    delta_z,
    gaussian_fit,
    line_head_scores,
    screening_summary,
)
from mtopnet_core.line_comb import LINE_HEADS  # noqa: E402
from mtopnet_core.model import ModelConfig  # noqa: E402
from mtopnet_core.results import open_results  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402
from mtopnet_core.training import TrainConfig, train  # noqa: E402

VARIANTS = {
    "multi_task": ("multi-task (paper)", {}),
    "single_task": ("single-task (redshift only)", {"line_location": 0.0, "log_mstar": 0.0, "log_sfr": 0.0}),
    "no_mass_sfr": ("no M*/SFR (redshift + lines)", {"log_mstar": 0.0, "log_sfr": 0.0}),
    "no_lines": ("no line locations (redshift + M* + SFR)", {"line_location": 0.0}),
}
"""Folder name: (label, task weights that differ from the paper's)."""


def _complete(results: Path) -> bool:
    meta = results / "results.json"
    return meta.is_file() and json.loads(meta.read_text()).get("status") == "complete"


def score(results: Path) -> dict:
    """Success and catastrophic-outlier fractions, and the Gaussian widths of the M*/SFR residuals (dex)."""
    catalogue = open_results(results).catalogue
    dz = np.abs(np.nan_to_num(delta_z(catalogue), nan=np.inf))
    screened = screening_summary(catalogue).loc["all"]
    row = {"n": int(len(catalogue)),
           "success_0.01": float(np.mean(dz < 0.01)),
           "catastrophic": float(np.mean(dz > CATASTROPHIC_DZ)),
           "success_0.01_screened": float(screened["accuracy_after"]),
           "rejected": float(screened["rejected"])}
    for hours in (2, 4, 8):
        rows = catalogue["t_exp_h"].to_numpy() == hours
        row[f"success_0.01_{hours}h"] = float(np.mean(dz[rows] < 0.01))
        row[f"catastrophic_{hours}h"] = float(np.mean(dz[rows] > CATASTROPHIC_DZ))
    for name in ("log_mstar", "log_sfr"):
        residual = (catalogue[f"{name}_pred"] - catalogue[f"{name}_true"]).to_numpy()
        row[f"sigma_{name}"] = gaussian_fit(residual[np.isfinite(residual)])[1]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="training store")
    parser.add_argument("--test", type=Path, required=True, help="test store (another seed)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="which variants (default: all)")
    parser.add_argument("--line-head", choices=LINE_HEADS, default=LINE_HEADS[0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    table, snr = {}, None
    for key in args.variants:
        name, weights = VARIANTS[key]
        folder = args.out / key
        start = time.perf_counter()
        model_config = ModelConfig(loss_weights={**ModelConfig().loss_weights, **weights}, line_head=args.line_head)
        model = train(args.data, folder, TrainConfig(seed=args.seed, max_epochs=args.epochs), model_config)
        results = folder / "results"
        if not _complete(results):
            predict_store(args.test, results, model.parent, overwrite=True, progress=False)
        meta = json.loads((folder / "model.json").read_text())
        table[name] = {**score(results), "loss_weights": model_config.loss_weights,
                       "epochs": meta["history"]["epochs"], "best_epoch": meta["history"]["best_epoch"],
                       "seconds_this_run": time.perf_counter() - start}
        if model_config.loss_weights["line_location"] > 0:
            test = open_dataset(args.test)
            snr = dataset_line_signal_to_noise(test) if snr is None else snr
            rows = np.linspace(0, len(test) - 1, min(1000, len(test))).astype(int)
            table[name]["line_head"] = line_head_scores(open_results(results).line_probability(rows),
                                                        test.catalogue["z"].to_numpy()[rows],
                                                        snr.iloc[rows].reset_index(drop=True))
    (args.out / "ablation.json").write_text(json.dumps({"data": str(args.data), "test": str(args.test),
                                                        "epochs": args.epochs, "seed": args.seed,
                                                        "line_head": args.line_head,
                                                        "variants": table}, indent=2))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {date.today()}; "
          f"train {args.data.name}, test {args.test.name}, {args.epochs} epochs, seed {args.seed}, "
          f"line head {args.line_head}\n")
    print("| variant | |dz|<0.01 all | 2 h | 8 h | catastrophic (|dz|>0.5) | 2 h | after entropy<2 "
          "(rejected) | sigma log M* | sigma log SFR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in table.items():
        masses = (f"{row['sigma_log_mstar']:.3f} | {row['sigma_log_sfr']:.3f}"
                  if name.startswith("multi") else "- | -")
        print(f"| {name} | {row['success_0.01']:.3f} | {row['success_0.01_2h']:.3f} | {row['success_0.01_8h']:.3f} "
              f"| {row['catastrophic']:.4f} | {row['catastrophic_2h']:.4f} | {row['success_0.01_screened']:.3f} "
              f"({row['rejected']:.3f}) | {masses} |")
    for name, row in table.items():
        if "line_head" in row:
            print(f"\n{name}: line head ROC AUC {row['line_head']['auc']:.3f}, lines with S/N > 5 found "
                  f"{row['line_head']['strong_found']:.3f} of {row['line_head']['n_strong']}")


if __name__ == "__main__":
    main()
