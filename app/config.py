"""Where the app finds its data and model: command-line ``--args``, environment, or the shipped demo.

``panel serve app --args --results DIR [--model DIR] [--data-dir DIR] [--roots DIR ...]``; or
the environment variables MTOPNET_APP_RESULTS, MTOPNET_MODEL, MTOPNET_APP_DATA and
MTOPNET_APP_ROOTS (folders separated by ``os.pathsep``). Without a results folder the app opens
the demo (a mock test set predicted with the shipped model, built on first start).

The page may open results folders and data sets (``?open=PATH``) only under the roots: by
default the app's data folder and the results folder given at start.
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
        The app's own folder: demo data, inspections, maps, predictions of opened data sets.
    roots : tuple of pathlib.Path
        Folders (resolved) under which the page may open results and data sets.
    """

    results: Path | None
    model: Path | None
    data_dir: Path
    roots: tuple[Path, ...]


def app_config(argv: list[str] | None = None) -> AppConfig:
    """Read the settings from ``argv`` (``panel serve --args ...``) and the environment."""
    parser = argparse.ArgumentParser(prog="panel serve app --args")
    parser.add_argument("--results", type=Path, default=os.environ.get("MTOPNET_APP_RESULTS"))
    parser.add_argument("--model", type=Path, default=os.environ.get("MTOPNET_MODEL"))
    parser.add_argument("--data-dir", type=Path,
                        default=os.environ.get("MTOPNET_APP_DATA", Path.home() / ".cache" / "mtopnet-app"))
    parser.add_argument("--roots", type=Path, nargs="*",
                        default=[Path(p) for p in os.environ.get("MTOPNET_APP_ROOTS", "").split(os.pathsep) if p])
    args, _ = parser.parse_known_args(argv or [])
    data_dir = Path(args.data_dir).expanduser()
    roots = [data_dir, *([args.results] if args.results else []), *args.roots]
    unique = tuple(dict.fromkeys(Path(root).expanduser().resolve() for root in roots))
    return AppConfig(args.results, args.model, data_dir, unique)
