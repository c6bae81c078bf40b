"""Where the app finds its data and model: command-line ``--args``, environment, or the shipped demo.

``panel serve app --args --results DIR [--model DIR] [--data-dir DIR]``; or the environment
variables MTOPNET_APP_RESULTS, MTOPNET_MODEL and MTOPNET_APP_DATA. Without a results folder the
app opens the demo (a mock test set predicted with the shipped model, built on first start).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AppConfig", "app_config"]


@dataclass(frozen=True)
class AppConfig:
    """Settings of one app process.

    Attributes
    ----------
    results : pathlib.Path or None
        Results folder to open; None for the demo.
    model : pathlib.Path or None
        Model folder; None for the shipped model.
    data_dir : pathlib.Path
        The app's own folder: demo data, inspections, uploads.
    """

    results: Path | None
    model: Path | None
    data_dir: Path


def app_config(argv: list[str] | None = None) -> AppConfig:
    """Read the settings from ``argv`` (``panel serve --args ...``) and the environment."""
    parser = argparse.ArgumentParser(prog="panel serve app --args")
    parser.add_argument("--results", type=Path, default=os.environ.get("MTOPNET_APP_RESULTS"))
    parser.add_argument("--model", type=Path, default=os.environ.get("MTOPNET_MODEL"))
    parser.add_argument("--data-dir", type=Path,
                        default=os.environ.get("MTOPNET_APP_DATA", Path.home() / ".cache" / "mtopnet-app"))
    args, _ = parser.parse_known_args(argv or [])
    return AppConfig(args.results, args.model, Path(args.data_dir))
