"""The paper-scale run in one command: simulate, train, calibrate, and write the model folder.

Made for a lent GPU machine (one H200, 16 cores, JAX but no TensorFlow or Keras: carry the
wheels, see ``scripts/device_wheels.sh``), where a command may run 10 minutes::

    KERAS_BACKEND=jax python scripts/paper_scale.py --out $OUT/model --work /tmp/paper --budget-s 540

1. simulates the paper-sized survey (118 194 spectra, the default light-cone population) and a
   separate calibration mock, on every core;
2. trains with the paper's schedule (70/15/15 split, learning rate 0.005 -> 0.0005 over 50
   epochs, early stopping with patience 10) until early stopping or until another epoch would
   pass the time budget;
3. calibrates the PDFs on the calibration mock (:mod:`mtopnet_core.calibration`);
4. writes ``model.keras`` (weights only), ``model.json`` (with the seeds, the history and
   ``run``: this call's arguments, backend, device, processor, timings and epochs reached, and
   ``earlier_calls``, those of the calls it resumed) and ``history.csv`` to ``--out``.

Everything is seeded (``--seed`` for the survey, the split and the weights; ``--seed + 1`` for
the calibration mock). Run again with the same ``--work`` (and a new ``--out``) on the same
machine, it keeps the mocks and resumes training from the run's last epoch. ``--trained-out``
receives the trained, uncalibrated model as soon as training ends, so a cut-off calibration
loses nothing. A run may also go on on another machine: ``--run-out`` writes the run's state as
one archive (its last checkpoint with the optimizer, log, split, settings and best weights, ~12
MB), and ``--resume-from`` that archive continues it on a fresh machine, which simulates the same
survey from the seed. ``tests/test_paper_scale.py`` runs it at a tiny size on the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import tarfile
import time
from pathlib import Path

from mtopnet_core.jsonio import write_json_atomic
from mtopnet_core.machine import cpu_description

logger = logging.getLogger("paper_scale")

PAPER_SIZE = 118_194
"""Spectra in the paper's data set (section 2)."""

CALLS_FILE = "paper_scale_calls.json"
"""In the run folder: one record per call of this script that trained the run (its archive carries it)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (new)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the mocks and the run")
    parser.add_argument("--n", type=int, default=PAPER_SIZE, help="spectra in the training survey")
    parser.add_argument("--n-calibration", type=int, default=6000, help="spectra in the calibration mock")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="processes for simulation and preprocessing")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--kernel-size", type=int, default=None,
                        help="width of every convolution (default: ModelConfig's, 7); 5 runs the exported network "
                             "~20%% faster on a CPU core, TensorFlow's ~13%% (BENCHMARKS.md), to be trained and "
                             "checked against the paper")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="wall-clock seconds for the whole run; training stops early to leave time to calibrate")
    parser.add_argument("--calibration-s", type=float, default=60.0, help="seconds kept for calibration and writing")
    parser.add_argument("--loader-threads", type=int, default=4, help="threads making batches ahead of the GPU")
    parser.add_argument("--steps-per-execution", type=int, default=16,
                        help="training steps between batch callbacks (each round waits for the GPU)")
    parser.add_argument("--trained-out", type=Path, default=None,
                        help="also write the trained model here (new folder), before calibrating")
    parser.add_argument("--run-out", type=Path, default=None,
                        help="write the run's state to this archive (.tar) for --resume-from on another machine")
    parser.add_argument("--resume-from", type=Path, default=None,
                        help="a --run-out archive: training goes on from its last epoch (same arguments)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")

    started = time.time()
    import keras  # after argument parsing: the backend comes from KERAS_BACKEND

    from mtopnet_core.calibrate_model import calibrate_model
    from mtopnet_core.model import ModelConfig
    from mtopnet_core.simulate.settings import SimulationSettings
    from mtopnet_core.simulate.survey import simulate_survey
    from mtopnet_core.store import DatasetError, open_dataset
    from mtopnet_core.training import TrainConfig, export_run, train

    for folder in (args.out, args.trained_out):
        if folder is not None and folder.exists() and any(folder.iterdir()):
            raise SystemExit(f"{folder}: not empty; the model needs a new folder")
    timings = {}
    survey, calibration = args.work / "survey", args.work / "calibration"
    settings = SimulationSettings()
    for path, n, seed in ((survey, args.n, args.seed), (calibration, args.n_calibration, args.seed + 1)):
        try:
            done = open_dataset(path).metadata
            kept = done.get("n_spectra") == n and done.get("seed") == seed
        except DatasetError:
            kept = False
        if kept:
            logger.info("%s: the mock of a previous run (%d spectra, seed %d), kept", path, n, seed)
        else:
            simulate_survey(path, n, seed, settings, workers=args.workers, progress=False)
    timings["simulate_s"] = round(time.time() - started, 1)

    run = args.work / "run"
    if args.resume_from is not None and not (run / "last.keras").is_file():
        run.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.resume_from) as archive:
            archive.extractall(run, filter="data")
        logger.info("resuming the run archived in %s", args.resume_from)
    config = TrainConfig(seed=args.seed, batch_size=args.batch_size, max_epochs=args.max_epochs)
    deadline = started + args.budget_s - args.calibration_s
    model_config = ModelConfig(kernel_size=args.kernel_size) if args.kernel_size else None
    train(survey, run, config, model_config, verbose=2, workers=args.workers, deadline=deadline,
          loader_threads=args.loader_threads, steps_per_execution=args.steps_per_execution)
    timings["train_s"] = round(time.time() - started - timings["simulate_s"], 1)

    exported = export_run(run, args.trained_out or args.work / "exported")
    # this call's record joins those of the calls before it (kept in the run, so in its archive)
    call = {"arguments": {k: str(v) for k, v in vars(args).items()}, "backend": keras.backend.backend(),
            "device": _device(keras.backend.backend()), "processor": cpu_description(), "machine": platform.node(),
            "cpu_count": os.cpu_count(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "epochs_after": json.loads((exported / "model.json").read_text())["history"]["epochs"],
            "timings": timings}
    calls_path = run / CALLS_FILE
    earlier = json.loads(calls_path.read_text()) if calls_path.is_file() else []
    write_json_atomic(calls_path, [*earlier, call])
    _record_run(exported / "model.json", call, earlier)
    if args.run_out is not None:
        _archive_run(run, exported / "model.keras", args.run_out)
    calibrate_model(exported, calibration, args.out, progress=False)
    shutil.copyfile(run / "history.csv", args.out / "history.csv")
    timings["total_s"] = round(time.time() - started, 1)
    _record_run(args.out / "model.json", call, earlier)
    logger.info("model written to %s (%s)", args.out, timings)
    return 0


def _record_run(meta_path: Path, call: dict, earlier: list[dict]) -> None:
    """Add ``run`` to a model's metadata: this call (backend, device, timings) and the calls before it."""
    meta = json.loads(meta_path.read_text())
    meta["run"] = {"script": "scripts/paper_scale.py", **call, "earlier_calls": earlier}
    write_json_atomic(meta_path, meta)


def _device(backend: str) -> str:
    """The device the backend trains on, e.g. ``gpu: NVIDIA H200`` or ``cpu``."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {device.device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    return backend


def _archive_run(run: Path, best_weights: Path, path: Path) -> None:
    """What another machine needs to resume ``run``: the full last checkpoint, the best one's weights.

    The best checkpoint goes as weights only (the optimizer's moments would triple it, and a
    returned file may hold 16 MB); the run only loads it again to save it as its result.
    """
    with tarfile.open(path, "w") as archive:
        for name in ("model.json", "split.npz", "history.csv", "last.keras", CALLS_FILE):
            archive.add(run / name, arcname=name)
        archive.add(best_weights, arcname="best.keras")
    logger.info("run archived in %s (%.1f MB)", path, path.stat().st_size / 1e6)


if __name__ == "__main__":
    raise SystemExit(main())
