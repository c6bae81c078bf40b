"""Our results beside the paper's on a mock test set: the line-location head, Fig. 8 with its
reference curve, screening, calibration, and the hard subsets.

Usage::

    python benchmarks/bench_paper.py --data TEST_STORE --results RESULTS [--lines-sample 1000]

RESULTS is ``mtopnet predict`` of TEST_STORE. Prints Markdown tables for BENCHMARKS.md:

- the line head: ROC AUC of ``line_probability`` against the paper's line masks (Table 1 lines
  within 5 channels), and the fraction of catalogue lines with S/N > 5 that have a predicted
  line (probability >= 0.5) within 5 channels (issue 9's targets: 0.95 and 0.90);
- Fig. 8: success (|dz| < 0.01) per m_H bin beside the paper's reference, the fraction whose
  redshift is measurable from two lines (one S/N > 7, another S/N > 5; line S/N from the mock's
  own noise, :func:`mtopnet_core.evaluation.line_signal_to_noise`);
- screening (entropy < 2, skewness > 20) at 2 h and 8 h: success before and after, rejected
  fraction, and catastrophic redshifts among the kept;
- PIT histogram and the central 68% / 95% intervals' coverage;
- success of quiescent galaxies and of z > 2.5.
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import date

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mtopnet_core.evaluation import (  # noqa: E402
    CATASTROPHIC_DZ,
    dataset_line_signal_to_noise,
    delta_z,
    interval_coverage,
    line_head_scores,
    measurable_redshift,
    pit_values,
)
from mtopnet_core.metrics import screen  # noqa: E402
from mtopnet_core.results import open_results  # noqa: E402
from mtopnet_core.store import open_dataset  # noqa: E402

THRESHOLD = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the mock test store")
    parser.add_argument("--results", required=True, help="mtopnet predict of it")
    parser.add_argument("--lines-sample", type=int, default=1000, help="spectra for the line-head scores")
    args = parser.parse_args()
    dataset, results = open_dataset(args.data), open_results(args.results)
    cat = results.catalogue
    n = len(cat)
    print(f"{date.today()}, {platform.processor() or platform.machine()}, {n} spectra of {args.data}, "
          f"model {results.metadata.get('model', {}).get('version')}\n")

    snr = dataset_line_signal_to_noise(dataset)
    rows = np.linspace(0, n - 1, min(args.lines_sample, n)).astype(int)
    lines = line_head_scores(results.line_probability(rows), dataset.catalogue["z"].to_numpy()[rows],
                             snr.iloc[rows].reset_index(drop=True))
    auc, recovered, n_lines = lines["auc"], lines["strong_found"], lines["n_strong"]
    print("| line head | ours | target |\n|---|---|---|")
    print(f"| ROC AUC against the line masks ({rows.size} spectra) | {auc:.3f} | >= 0.95 |")
    print(f"| lines with S/N > 5 found within 5 channels ({n_lines} lines) | {recovered:.3f} | >= 0.90 |\n")

    dz = np.abs(delta_z(cat))
    good = dz < THRESHOLD
    measurable = measurable_redshift(snr)
    print("| m_H | N | success, ours | measurable from two lines (paper's reference) |\n|---|---|---|---|")
    m_h = cat["m_h"].to_numpy(float)
    for lo in np.arange(19, 27):
        sel = (m_h >= lo) & (m_h < lo + 1)
        if sel.sum() >= 10:
            print(f"| {lo}-{lo + 1} | {sel.sum()} | {good[sel].mean():.3f} | {measurable[sel].mean():.3f} |")

    print("\n| exposure | success | kept after screening | success of the kept | catastrophic among kept |")
    print("|---|---|---|---|---|")
    keep = screen(cat["entropy"].to_numpy(float), cat["skewness"].to_numpy(float))
    for hours in (2.0, 4.0, 8.0):
        sel = cat["t_exp_h"].to_numpy() == hours
        kept = sel & keep
        print(f"| {hours:g} h | {good[sel].mean():.3f} | {kept.sum() / sel.sum():.3f} | {good[kept].mean():.3f} | "
              f"{np.mean(dz[kept] > CATASTROPHIC_DZ):.4f} |")

    pit = pit_values(results.redshift_pdf(), cat["z_true"].to_numpy(float))
    histogram = np.histogram(pit[np.isfinite(pit)], bins=10, range=(0, 1))[0]
    coverage = interval_coverage(pit)
    print(f"\nPIT histogram (10 bins): {histogram.tolist()}; flat would be {np.isfinite(pit).sum() / 10:.0f} "
          f"per bin; coverage {coverage}\n")

    quiescent = cat["galaxy_class"].astype(str).to_numpy() == "quiescent"
    high_z = cat["z_true"].to_numpy(float) > 2.5
    print("| subset | N | success |\n|---|---|---|")
    for name, sel in (("all", np.ones(n, bool)), ("quiescent", quiescent), ("z > 2.5", high_z),
                      ("measurable from two lines", measurable), ("not measurable", ~measurable)):
        print(f"| {name} | {sel.sum()} | {good[sel].mean():.3f} |")


if __name__ == "__main__":
    main()
