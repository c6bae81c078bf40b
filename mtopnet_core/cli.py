"""The ``mtopnet`` command line: thin sub-commands over the library.

Logging is configured here and nowhere else. Every expected failure (the project's own errors,
:class:`~mtopnet_core.errors.MtopnetError`: bad arguments, unusable output folder, broken data
set, model or FITS file; and a path that does not exist or cannot be written) ends with one line
on stderr naming the object and the problem, and exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path

from mtopnet_core import __version__
from mtopnet_core.conventions import SUCCESS_THRESHOLD
from mtopnet_core.errors import MtopnetError, SurveyError, UsageError
from mtopnet_core.line_comb import LINE_HEADS

__all__ = ["main", "run"]

logger = logging.getLogger("mtopnet")

EXPECTED_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
"""File-system errors a user causes by naming the wrong path; reported in one line like the project's own."""


def _cmd_simulate(args: argparse.Namespace) -> int:
    from mtopnet_core.simulate.settings import SimulationSettings
    from mtopnet_core.simulate.survey import exposure_mix, simulate_survey

    for flag, value, least in (("--n", args.n, 1), ("--seed", args.seed, 0), ("--chunk-size", args.chunk_size, 1)):
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    defaults = SimulationSettings()
    try:
        hours, weights = exposure_mix(args.exposure_mix, defaults.sub_exposure_s)
    except SurveyError as exc:
        raise UsageError(f"--exposure-mix: {exc}") from None
    settings = SimulationSettings(exposure_hours=hours, exposure_weights=weights, chunk_size=args.chunk_size)
    simulate_survey(args.out, args.n, args.seed, settings, workers=args.workers,
                    overwrite=args.overwrite, progress=not args.quiet)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mtopnet_core.store import open_dataset

    open_dataset(args.data)  # a wrong folder is told before Keras's import, which prints to stderr
    from mtopnet_core.model import ModelConfig
    from mtopnet_core.training import TrainConfig, train

    weights = dict(ModelConfig().loss_weights)
    for item in filter(None, (args.loss_weights or "").split(",")):
        name, _, value = item.partition("=")
        if name not in weights:
            raise UsageError(f"--loss-weights: unknown task {name!r} (tasks: {', '.join(weights)})")
        weights[name] = float(value)
    config = TrainConfig(seed=args.seed, batch_size=args.batch_size, max_epochs=args.max_epochs)
    model_config = ModelConfig(loss_weights=weights, line_head=args.line_head)
    print(train(args.data, args.out, config, model_config, warm_start=args.warm_start, workers=args.workers))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from mtopnet_core.allocator import keep_freed_memory
    from mtopnet_core.assets import shipped_model_dir
    from mtopnet_core.batch import fits_paths, predict_fits, predict_store

    if args.mc_passes < 0 or args.mc_passes == 1:
        raise UsageError(f"--mc-passes must be 0 (off) or at least 2, got {args.mc_passes}")
    model = args.model or shipped_model_dir()
    if not args.input.exists():
        raise FileNotFoundError(f"{args.input}: no such file or folder")
    keep_freed_memory()  # this process ends with the command (mtopnet_core.allocator)
    if (args.input / "dataset.json").is_file():
        out = predict_store(args.input, args.out, model, mc_passes=args.mc_passes, scheduler=args.scheduler,
                            workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    else:
        if args.scheduler:
            raise UsageError("--scheduler is for stores; FITS files are predicted on this machine")
        from mtopnet_core.simulate.sky import load_sky_model  # the simulator's package: FITS input only

        paths = fits_paths(args.input)
        if not paths:
            raise UsageError(f"{args.input}: no FITS files (*.fits, *.fit, *.fits.gz) in this folder")
        out = predict_fits(paths, args.out, model, load_sky_model().emission, mc_passes=args.mc_passes,
                           workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    print(out)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from mtopnet_core.assets import shipped_model_dir
    from mtopnet_core.calibrate_model import calibrate_model

    fit = calibrate_model(args.model or shipped_model_dir(), args.data, args.out, progress=not args.quiet,
                          mc_passes=args.mc_passes)
    print(f"temperature {fit.temperature:.3f} at entropy {fit.entropy_ref:.2f}, d ln T / d entropy "
          f"{fit.entropy_slope:.3f}: mean NLL of the true redshift's bin {fit.nll_before:.3f} -> "
          f"{fit.nll_after:.3f} on {fit.n} spectra")
    print(args.out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from mtopnet_core.export import export_onnx

    record = export_onnx(args.model)
    print(f"{args.model / record['file']}: sha256 {record['sha256'][:12]}, "
          f"from model.keras {record['keras_sha256'][:12]}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mtopnet_core.evaluation_report import evaluate

    summary = evaluate(args.results, args.out, args.mc_results, threshold=args.threshold, seed=args.seed)
    screening = summary["screening"]["entropy"]

    def fraction(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for group in [k for k in screening if k.endswith(" h")]:
        row = screening[group]
        print(f"{group}: |dz| < {args.threshold:g} for {fraction(row['accuracy_before'])} -> "
              f"{fraction(row['accuracy_after'])} after screening (rejected {fraction(row['rejected'])})")
    lines = summary["line_head"]
    strong = ("" if lines["strong_found"] is None else
              f", lines with S/N > 5 found within 5 channels {lines['strong_found']:.1%} ({lines['n_strong']} lines)")
    if lines["auc"] is not None:
        print(f"line head: ROC AUC {lines['auc']:.3f} against the line masks ({lines['n_spectra']} spectra){strong}")
    mc_screening = (summary.get("mc_dropout") or {}).get("screening")
    if mc_screening:
        kept = mc_screening["catastrophic_kept"]
        print(f"MC dropout, entropy < {mc_screening['entropy_max']:g} (the model's cut for these PDFs): "
              f"|dz| < {args.threshold:g} for {fraction(mc_screening['all']['accuracy_after'])} of the kept, "
              f"rejected {fraction(mc_screening['all']['rejected'])}, catastrophic among the kept "
              f"{'n/a' if kept is None else f'{kept:.2%}'}")
    print(args.out)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mtopnet_core.report import make_report

    out = args.out or Path(args.data) / "report"
    for path in make_report(args.data, out, seed=args.seed):
        print(path)
    return 0


def _cmd_export_fits(args: argparse.Namespace) -> int:
    from mtopnet_core.fits_io import export_dataset_fits

    for path in export_dataset_fits(args.data, args.out, ids=args.ids, first=args.first,
                                    overwrite=args.overwrite):
        print(path)
    return 0


def _cmd_check_fits(args: argparse.Namespace) -> int:
    from mtopnet_core.fits_io import read_fits_spectrum

    status = 0
    for path in args.files:
        try:
            spectrum = read_fits_spectrum(path)
        except (OSError, ValueError) as exc:
            print(f"ERROR {exc}")
            status = 2
            continue
        verdict = "ok" if not spectrum.issues else "; ".join(spectrum.issues)
        print(f"{path}: {spectrum.object_id}, {spectrum.wave.size} channels, {verdict}")
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mtopnet`` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="mtopnet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mtopnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="make a mock MOONS survey (data set folder)",
                         formatter_class=_HelpWithDefaults)
    sim.add_argument("--n", type=int, required=True, help="number of spectra")
    sim.add_argument("--seed", type=int, required=True, help="master seed (same seed, same bytes)")
    sim.add_argument("--out", type=Path, required=True, help="output folder (new, empty, or unfinished run)")
    sim.add_argument("--exposure-mix", default="2:1,4:1,8:1",
                     help="exposure times in hours with relative weights, HOURS:WEIGHT,...")
    sim.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    sim.add_argument("--chunk-size", type=int, default=256, help="spectra per stored chunk")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_cmd_simulate)

    trn = sub.add_parser("train", help="train M-TOPnet on a data set (resumes an interrupted run)",
                         formatter_class=_HelpWithDefaults)
    trn.add_argument("--data", type=Path, required=True, help="data set folder")
    trn.add_argument("--out", type=Path, required=True, help="training folder")
    trn.add_argument("--seed", type=int, default=0, help="seed of the split, shuffling and weights")
    trn.add_argument("--batch-size", type=int, default=64)
    trn.add_argument("--max-epochs", type=int, default=100)
    trn.add_argument("--workers", type=int, default=1, help="processes for the one-off preprocessing")
    trn.add_argument("--warm-start", type=Path, default=None,
                     help="trained model folder whose training to continue (same network; same data set and split "
                          "seed, or a data set of another seed; its line head may differ)")
    trn.add_argument("--line-head", choices=LINE_HEADS, default=LINE_HEADS[0],
                     help="line-location head: the comb over fine redshift bins, or the paper's MLP")
    trn.add_argument("--loss-weights", default="",
                     help="task weights, e.g. line_location=0,log_mstar=0,log_sfr=0 for the single-task ablation")
    trn.set_defaults(func=_cmd_train)

    prd = sub.add_parser("predict", help="predict redshift PDFs, M* and SFR for a store or FITS files",
                         formatter_class=_HelpWithDefaults)
    prd.add_argument("--input", type=Path, required=True,
                     help="data set folder (store), a FITS file, or a folder of FITS files")
    prd.add_argument("--out", type=Path, required=True,
                     help="results folder to write (an interrupted run of the same command is resumed)")
    prd.add_argument("--model", type=Path, default=None, help="trained model folder (default: the shipped model)")
    prd.add_argument("--mc-passes", type=int, default=0, help="Monte Carlo dropout passes (0: off)")
    prd.add_argument("--scheduler", default=None, help="dask.distributed scheduler address, e.g. tcp://host:8786")
    prd.add_argument("--workers", type=int, default=None,
                     help="on this machine (without --scheduler): prediction threads for a store, FITS "
                          "reader processes for files (default: one per core)")
    prd.add_argument("--overwrite", action="store_true", help="replace an existing results folder")
    prd.add_argument("--quiet", action="store_true", help="no progress bar")
    prd.set_defaults(func=_cmd_predict)

    cal = sub.add_parser("calibrate",
                         help="fit the redshift PDFs' temperature on a mock data set; writes a calibrated copy",
                         formatter_class=_HelpWithDefaults)
    cal.add_argument("--data", type=Path, required=True,
                     help="mock data set the model was neither trained nor tested on")
    cal.add_argument("--out", type=Path, required=True, help="new model folder")
    cal.add_argument("--model", type=Path, default=None, help="trained model folder (default: the shipped model)")
    cal.add_argument("--mc-passes", type=int, default=0,
                     help="also choose the entropy cut for MC-dropout PDFs of this many passes that keeps at most "
                          "0.3%% catastrophic redshifts on the data set")
    cal.add_argument("--quiet", action="store_true", help="no progress bar")
    cal.set_defaults(func=_cmd_calibrate)

    onx = sub.add_parser("export", help="export a trained model's network to ONNX (model.onnx) for fast prediction")
    onx.add_argument("--model", type=Path, required=True, help="trained model folder (written into)")
    onx.set_defaults(func=_cmd_export)

    evl = sub.add_parser("evaluate", help="the paper's evaluation figures and a summary for results of a mock test set",
                         formatter_class=_HelpWithDefaults)
    evl.add_argument("--results", type=Path, required=True, help="results folder of `mtopnet predict` on a mock store")
    evl.add_argument("--out", type=Path, required=True, help="folder for the figures and summary.json")
    evl.add_argument("--mc-results", type=Path, default=None,
                     help="results of the same spectra with --mc-passes, for the MC-dropout comparison")
    evl.add_argument("--threshold", type=float, default=SUCCESS_THRESHOLD, help="|Delta z| of a successful prediction")
    evl.add_argument("--seed", type=int, default=0, help="seed of the UMAP map")
    evl.set_defaults(func=_cmd_evaluate)

    rep = sub.add_parser("report", help="draw the paper's Fig. 1 and Fig. 2 for a data set (PNG)")
    rep.add_argument("--data", type=Path, required=True, help="data set folder")
    rep.add_argument("--out", type=Path, default=None, help="report folder (default: DATA/report)")
    rep.add_argument("--seed", type=int, default=0, help="seed for choosing the example spectra")
    rep.set_defaults(func=_cmd_report)

    exp = sub.add_parser("export-fits", help="write spectra of a data set as ESO Phase 3 FITS files")
    exp.add_argument("--data", type=Path, required=True, help="data set folder")
    exp.add_argument("--out", type=Path, required=True, help="folder for the FITS files")
    exp.add_argument("--ids", nargs="*", default=None, help="object IDs to export")
    exp.add_argument("--first", type=int, default=None, help="export the first N spectra")
    exp.add_argument("--overwrite", action="store_true", help="replace existing files")
    exp.set_defaults(func=_cmd_export_fits)

    chk = sub.add_parser("check-fits", help="validate 1D-spectrum FITS files and say what they lack")
    chk.add_argument("files", nargs="+", type=Path)
    chk.set_defaults(func=_cmd_check_fits)
    return parser


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Adds a flag's default to its help where it has one that the help does not state already
    (argparse's own formatter wrote "(default: None)" after "(default: the shipped model)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)) \
                or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    """Run ``mtopnet`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    # TensorFlow's C++ start-up chatter; TensorFlow 2.21 still prints absl's preamble and its oneDNN
    # line on import (tensorflow#102212), so the commands check their input before importing it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except (MtopnetError, *EXPECTED_OS_ERRORS) as exc:
        print(f"mtopnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mtopnet {args.command}: interrupted; finished chunks are kept, run the same "
              "command again to resume", file=sys.stderr)
        return 130


YOUNG_OBJECTS_PER_COLLECTION = 10_000
"""Allocations between the garbage collector's young passes in the ``mtopnet`` process (CPython's
default is 700). At 700 a ``mtopnet predict`` of 10 000 spectra ran 419 young, 38 middle and 3 full
passes, 0.27 s with the GIL held, the full ones during the imports, numba's loading and the first
chunk; at 10 000, 28 young and 2 middle ones, 0.10 s, the peak memory unchanged (BENCHMARKS.md)."""


def run() -> None:
    """The ``mtopnet`` console script: :func:`main` on ``sys.argv[1:]``, then exit with its status.

    It tunes the garbage collector for a command-line process, which :func:`main` (a library call
    too) leaves alone: fewer young passes (:data:`YOUNG_OBJECTS_PER_COLLECTION`), and the collector
    frozen once :func:`main` has written and closed everything, because the interpreter's last
    collections would otherwise walk every object that numba, ONNX Runtime and pandas left behind
    before the process may end (0.3-0.45 s after a 9 s ``mtopnet predict``).
    """
    gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, *gc.get_threshold()[1:])
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()
