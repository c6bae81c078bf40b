"""Locate and verify the files the project ships in ``assets/``.

Every asset has a versioned file name and a SHA-256 recorded here; loading a file whose checksum
differs fails loudly, naming the file and the command that rebuilds it (``assets/README.md``).
The folder is the installed package data (``mtopnet_core.shipped``, made from ``assets/``), or
``assets/`` of a checkout, or ``$MTOPNET_ASSETS`` when that is set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from mtopnet_core.errors import MtopnetError

__all__ = ["Asset", "ASSETS", "SHIPPED_MODEL", "assets_dir", "asset_path", "shipped_model_dir", "AssetError"]


class AssetError(MtopnetError, RuntimeError):
    """A shipped asset is missing or does not match its recorded checksum."""


@dataclass(frozen=True)
class Asset:
    """One shipped file: its name, checksum and the command that rebuilds it."""

    filename: str
    sha256: str
    rebuild: str


SHIPPED_MODEL = "mtopnet_model_v7"
"""Folder name (and version) of the shipped trained model inside the assets folder."""

ASSETS: dict[str, Asset] = {
    "template_bank": Asset(
        "template_bank_bc03_v1.npz",
        "7e4bcd918250f6c7ab9747cd57bdad1c2072848056e46d9b7f84fc0aeb8b53a4",
        "python scripts/build_template_bank.py",
    ),
    "sky_model": Asset(
        "sky_moons_lr_v1.npz",
        "71706ac0c1de146adc1e94936fbc84a4ef8c020ee42f19657756f2dae2790cd6",
        "python scripts/build_sky_model.py",
    ),
    # the shipped trained model: weights without optimizer state, and its metadata (grid, bins,
    # standardisation, training provenance, PDF calibration, evaluation summary); assets/README.md
    "model_weights": Asset(
        f"{SHIPPED_MODEL}/model.keras",
        "f9a691875a0e999081321c4486a6799699876915bba2f38e3dcc71aaa049b81a",
        "see assets/README.md: on a GPU machine, scripts/paper_scale.py (118 194 spectra, seed 20261130; "
        "scripts/paper_scale_device.sh), then mtopnet export --model trained, calibrate, ship_model.py",
    ),
    "model_metadata": Asset(
        f"{SHIPPED_MODEL}/model.json",
        "90c45e3e7d5ad88fa7e45dbfed6dd62b6928613d2347326e1c12b4394735147c",
        "mtopnet export --model trained; mtopnet calibrate --model trained --data paper_cal6k --out cal; "
        f"python scripts/ship_model.py cal --evaluation EVAL/summary.json --name {SHIPPED_MODEL}",
    ),
    # the same network exported for ONNX Runtime (mtopnet_core.export); model.json records it too
    "model_onnx": Asset(
        f"{SHIPPED_MODEL}/model.onnx",
        "c3fa10a4b0c08663aae76972f78f77bbd5e006dca6f51ff6beecfa73e2534eb0",
        "mtopnet export --model trained (then calibrate and scripts/ship_model.py copy it)",
    ),
    # the dense layers after the trunk, for MC dropout in NumPy (mtopnet_core.mc_dropout)
    "model_mc_heads": Asset(
        f"{SHIPPED_MODEL}/heads.npz",
        "e07242fc4d043ec8197e0f2fc706ebe73f05b651c17dc816b35ff813b8b92f79",
        "mtopnet export --model trained (then calibrate and scripts/ship_model.py copy it)",
    ),
}


def assets_dir() -> Path:
    """The folder holding the shipped assets.

    ``$MTOPNET_ASSETS`` when set; else the installed package data (``mtopnet_core.shipped``, what a
    non-editable install carries); else ``assets/`` of the checkout this package lies in.
    """
    override = os.environ.get("MTOPNET_ASSETS")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("mtopnet_core.shipped")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[1] / "assets"


def asset_path(name: str, verify: bool = True) -> Path:
    """Path of a shipped asset, optionally verified against its SHA-256.

    Parameters
    ----------
    name : str
        Key in :data:`ASSETS` (``"template_bank"``, ``"sky_model"``, ``"model_weights"``, ``"model_metadata"``,
        ``"model_onnx"``, ``"model_mc_heads"``).
    verify : bool
        Check the file's SHA-256 against the recorded one.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    AssetError
        If the file is missing or its checksum differs.
    """
    asset = ASSETS[name]
    path = assets_dir() / asset.filename
    if not path.is_file():
        raise AssetError(f"{path}: asset missing; rebuild it with `{asset.rebuild}`")
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != asset.sha256:
            raise AssetError(
                f"{path}: checksum mismatch (corrupt or rebuilt file); rebuild it with "
                f"`{asset.rebuild}` and record the new SHA-256 in mtopnet_core/assets.py"
            )
    return path


def shipped_model_dir(verify: bool = True) -> Path:
    """Folder of the shipped trained model (``model.keras``, ``model.json``, ``model.onnx``, ``heads.npz``),
    checksums verified."""
    weights = asset_path("model_weights", verify)
    for name in ("model_metadata", "model_onnx", "model_mc_heads"):
        asset_path(name, verify)
    return weights.parent
