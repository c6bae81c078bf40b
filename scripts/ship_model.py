"""Copy a trained model into assets/ as the shipped model, without optimizer state, and print its checksums.

Usage::

    python scripts/ship_model.py SOURCE [--evaluation EVAL_FOLDER/summary.json] [--name mtopnet_model_vN]

SOURCE is either a ``mtopnet train`` folder, whose best checkpoint (``best.keras``, or
``model.keras`` when the run has finished) is rebuilt as a plain, uncompiled network (weights
only, ~8.6 MB instead of ~26 MB with Adam's moments) and saved with the run's ``model.json``, to
which the training history is added; or a model folder (e.g. written by ``mtopnet calibrate``
and ``mtopnet export``), whose ``model.keras``, ``model.onnx`` and ``heads.npz`` are copied byte
for byte. The evaluation summary, if given, is added to
``model.json``. Record the printed SHA-256 values in ``mtopnet_core/assets.py`` and
``assets/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from pathlib import Path

from mtopnet_core.assets import SHIPPED_MODEL, assets_dir
from mtopnet_core.export import ONNX_FILE
from mtopnet_core.mc_dropout import HEADS_FILE
from mtopnet_core.training import export_run

logger = logging.getLogger("ship_model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="training run or model folder")
    parser.add_argument("--evaluation", type=Path, default=None, help="summary.json of mtopnet evaluate")
    parser.add_argument("--name", default=SHIPPED_MODEL, help=f"model folder in assets/ (default {SHIPPED_MODEL})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    out = assets_dir() / args.name
    if out.resolve() == args.source.resolve():
        raise SystemExit(f"{out}: the source itself; ship from another folder")
    out.mkdir(parents=True, exist_ok=True)
    if (args.source / "history.csv").is_file():
        export_run(args.source, out)
    else:
        # byte for byte: the export (model.onnx, heads.npz) stays the export of this model.keras
        for name in ("model.keras", "model.json", ONNX_FILE, HEADS_FILE):
            if (args.source / name).is_file():
                shutil.copyfile(args.source / name, out / name)
    meta = json.loads((out / "model.json").read_text())
    if args.evaluation:
        meta["evaluation"] = json.loads(args.evaluation.read_text())
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name in [n for n in ("model.keras", "model.json", ONNX_FILE, HEADS_FILE) if (out / n).is_file()]:
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        logger.info("%s/%s  %.1f MB  sha256 %s", args.name, name, (out / name).stat().st_size / 1e6, digest)


if __name__ == "__main__":
    main()
