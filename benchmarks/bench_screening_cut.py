"""An entropy cut chosen on a calibration mock for a catastrophic-redshift target, tried on a test mock.

Usage::

    python benchmarks/bench_screening_cut.py --calibration CAL_RESULTS --test TEST_RESULTS \
        [--single TEST_SINGLE_RESULTS] [--target 0.003]

CAL_RESULTS and TEST_RESULTS are ``mtopnet predict`` of two mock sets with true redshifts (issue 9:
single-pass or ``--mc-passes 20`` results). The cut is the largest entropy threshold (in steps of
0.05) that keeps at most ``--target`` catastrophic redshifts (|dz| > 0.5) among the objects it
keeps on the calibration mock (:func:`mtopnet_core.evaluation.entropy_cut_for_catastrophic`, as
``mtopnet calibrate --mc-passes`` chooses it); the test mock then says whether that holds on
spectra the choice never saw. Prints a Markdown table for BENCHMARKS.md: success (|dz| < 0.01) of
the kept, rejected fraction and catastrophic fraction among the kept, per exposure time, for the
chosen cut and the paper's cut (entropy 2), on the test results (and the paper's cut on
``--single`` results).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mtopnet_core.evaluation import (
    CATASTROPHIC_DZ,
    CATASTROPHIC_TARGET,
    SUCCESS_THRESHOLD,
    catastrophic_among_kept,
    delta_z,
    entropy_cut_for_catastrophic,
)
from mtopnet_core.metrics import ENTROPY_THRESHOLD, screen
from mtopnet_core.results import open_results


def _catalogue(path: Path) -> pd.DataFrame:
    catalogue = open_results(path).catalogue
    if "z_true" not in catalogue or not np.isfinite(catalogue["z_true"].to_numpy(float)).any():
        raise SystemExit(f"{path}: no true redshifts (z_true); the cut needs mock results")
    return catalogue[np.isfinite(catalogue["z_peak"].to_numpy(float))]


def _rows(name: str, catalogue: pd.DataFrame, cut: float) -> list[str]:
    dz = np.abs(delta_z(catalogue))
    kept = screen(catalogue["entropy"].to_numpy(float), catalogue["skewness"].to_numpy(float), cut)
    t = catalogue["t_exp_h"].to_numpy()
    rows = []
    for label, group in [("all", np.ones(len(t), bool))] + [(f"{h:g} h", t == h) for h in sorted(np.unique(t))]:
        k = group & kept
        rows.append(f"| {name} | {cut:.2f} | {label} | {np.mean(dz[k] < SUCCESS_THRESHOLD):.3f} | "
                    f"{1 - k.sum() / group.sum():.3f} | {np.mean(dz[k] > CATASTROPHIC_DZ):.2%} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, required=True, help="results on the calibration mock")
    parser.add_argument("--test", type=Path, required=True, help="results on the test mock (the same kind)")
    parser.add_argument("--single", type=Path, default=None, help="single-pass results on the test mock")
    parser.add_argument("--target", type=float, default=CATASTROPHIC_TARGET,
                        help="catastrophic fraction among the kept")
    args = parser.parse_args()

    calibration, test = _catalogue(args.calibration), _catalogue(args.test)
    entropy, dz = calibration["entropy"].to_numpy(float), delta_z(calibration)
    cut = entropy_cut_for_catastrophic(entropy, dz, args.target)
    if cut is None:
        raise SystemExit(f"{args.calibration}: no entropy cut keeps at most {args.target:.2%} catastrophic")
    print(f"cut chosen on {args.calibration}: entropy < {cut:.2f} (catastrophic among the kept "
          f"{catastrophic_among_kept(entropy, dz, cut):.2%} there, target {args.target:.2%})\n")
    print("| results | entropy below | exposure | success of the kept | rejected | catastrophic among the kept |")
    print("|---|---|---|---|---|---|")
    for line in _rows(args.test.name, test, cut) + _rows(args.test.name, test, ENTROPY_THRESHOLD):
        print(line)
    if args.single:  # the same test mock predicted in one pass, under the paper's cut
        for line in _rows(args.single.name, _catalogue(args.single), ENTROPY_THRESHOLD):
            print(line)

if __name__ == "__main__":
    main()
