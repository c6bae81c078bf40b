"""Copy a trained model into assets/ as the shipped model, without optimizer state, and print its checksums.

Usage::

    python scripts/ship_model.py RUN_FOLDER [--evaluation EVAL_FOLDER/summary.json] [--name mtopnet_model_v1]

RUN_FOLDER is a ``mtopnet train`` folder; its best checkpoint (``best.keras``, or ``model.keras``
when the run has finished) is rebuilt as a plain, uncompiled network (weights only, ~8.6 MB instead of
~26 MB with Adam's moments) and saved with the run's ``model.json``, to which the training history
and, if given, the evaluation summary are added. Record the printed SHA-256 values in
``mtopnet_core/assets.py`` and ``assets/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import keras
import pandas as pd

from mtopnet_core.assets import assets_dir
from mtopnet_core.model import ModelConfig, build_model

logger = logging.getLogger("ship_model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--evaluation", type=Path, default=None, help="summary.json of mtopnet evaluate")
    parser.add_argument("--name", default="mtopnet_model_v1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    checkpoint = args.run / "model.keras" if (args.run / "model.keras").is_file() else args.run / "best.keras"
    meta = json.loads((args.run / "model.json").read_text())
    trained = keras.saving.load_model(checkpoint)
    plain = build_model(ModelConfig.from_dict(meta["model"]))
    plain.set_weights(trained.get_weights())

    history = pd.read_csv(args.run / "history.csv")
    best = history.loc[history["val_loss"].idxmin()]
    meta["history"] = {"epochs": int(len(history)), "best_epoch": int(best["epoch"]),
                       "best_val_loss": float(best["val_loss"]),
                       "best_val_losses": {k: float(best[k]) for k in history.columns if k.startswith("val_")},
                       "checkpoint": checkpoint.name}
    if args.evaluation:
        meta["evaluation"] = json.loads(args.evaluation.read_text())

    out = assets_dir() / args.name
    out.mkdir(parents=True, exist_ok=True)
    plain.save(out / "model.keras")
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name in ("model.keras", "model.json"):
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        logger.info("%s/%s  %.1f MB  sha256 %s", args.name, name, (out / name).stat().st_size / 1e6, digest)


if __name__ == "__main__":
    main()
