"""Visual-inspection records: one per object, saved to disk the moment they change.

A record holds a quality flag with a fixed vocabulary (Marz-style 0-4), issue marks, an optional
corrected redshift and a comment, keyed by the object ID as a string. The whole set lives in one
JSON file next to the results, rewritten atomically (temporary file + rename) on every change,
so a crash or reload never loses or half-writes a flag.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

__all__ = ["QUALITY_FLAGS", "ISSUE_MARKS", "Inspection", "InspectionStore", "EXPORT_FORMATS"]

logger = logging.getLogger(__name__)

QUALITY_FLAGS = {
    4: "4 secure: several features, unambiguous",
    3: "3 good: probably right",
    2: "2 possible: one feature or noisy",
    1: "1 unknown: no redshift",
    0: "0 not inspected",
}
"""Marz's quality-of-redshift scale; 0 means not inspected yet."""

ISSUE_MARKS = {
    "z": "wrong redshift (pipeline)",
    "s": "bad spectrum (sky, artefact)",
    "m": "wrong M*/SFR",
    "c": "confused lines / blend",
}
"""Issue letters (after DESI's VI flags), any combination."""

EXPORT_FORMATS = {"csv": "csv", "ecsv": "ascii.ecsv", "fits": "fits"}


@dataclass
class Inspection:
    """One object's inspection."""

    quality: int = 0
    issues: str = ""
    z_corrected: float | None = None
    comment: str = ""
    inspector: str = ""
    updated: str = ""

    def __post_init__(self) -> None:
        if self.quality not in QUALITY_FLAGS:
            raise ValueError(f"quality flag {self.quality!r} not in {sorted(QUALITY_FLAGS)}")
        unknown = set(self.issues) - set(ISSUE_MARKS)
        if unknown:
            raise ValueError(f"issue marks {''.join(sorted(unknown))!r} not in {''.join(ISSUE_MARKS)!r}")
        self.issues = "".join(sorted(set(self.issues)))
        if self.z_corrected is not None and not np.isfinite(self.z_corrected):
            raise ValueError(f"corrected redshift {self.z_corrected!r} is not a number")


@dataclass
class InspectionStore:
    """The inspections of one results set, persisted in ``path`` (JSON).

    Parameters
    ----------
    path : pathlib.Path
        JSON file; read if it exists.
    model_version : str
        Written into every export.
    """

    path: Path
    model_version: str = ""
    records: dict[str, Inspection] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                self.records = {str(k): Inspection(**v) for k, v in raw.get("records", {}).items()}
            except (OSError, ValueError, TypeError) as exc:
                # keep the unreadable file for the user; start a new one beside it
                backup = self.path.with_suffix(f".unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S}.json")
                os.replace(self.path, backup)
                logger.error("%s: unreadable inspections (%s); moved to %s", self.path, exc, backup.name)
                self.records = {}

    def get(self, object_id: str) -> Inspection:
        """The record of an object (a fresh, uninspected one if there is none)."""
        return self.records.get(str(object_id), Inspection())

    def set(self, object_id: str, inspector: str = "", **changes) -> Inspection:
        """Change fields of an object's record and save at once.

        Raises
        ------
        ValueError
            For a flag, issue mark or redshift outside the vocabulary.
        """
        record = Inspection(**{**asdict(self.get(object_id)), **changes, "inspector": inspector,
                               "updated": datetime.now(UTC).isoformat(timespec="seconds")})
        self.records[str(object_id)] = record
        self.save()
        return record

    def save(self) -> None:
        """Write all records atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        content = json.dumps({"format": "mtopnet-inspections", "model_version": self.model_version,
                              "records": {k: asdict(v) for k, v in self.records.items()}}, indent=1)
        handle, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, self.path)

    def inspected(self) -> set[str]:
        """IDs of objects with a quality flag set."""
        return {k for k, v in self.records.items() if v.quality > 0}

    def qualities(self, object_ids) -> np.ndarray:
        """Quality flag per object ID (0 when not inspected), shape (N,); fast for large tables."""
        records = self.records
        return np.array([records[i].quality if i in records else 0 for i in map(str, object_ids)], dtype=int)

    def as_frame(self, object_ids: pd.Series) -> pd.DataFrame:
        """Inspection columns for the given object IDs, in their order."""
        rows = [asdict(self.get(i)) for i in object_ids.astype(str)]
        frame = pd.DataFrame(rows, columns=list(asdict(Inspection())))
        frame.columns = [f"vi_{c}" for c in frame.columns]
        frame["vi_z_corrected"] = frame["vi_z_corrected"].astype(float)
        return frame

    def export(self, catalogue: pd.DataFrame, path: str | os.PathLike, inspector: str = "",
               extra_meta: dict | None = None) -> Path:
        """Write the catalogue with the inspection columns (CSV, ECSV or FITS, by the file's suffix).

        Object IDs stay strings; the model version, inspector name and date go into the metadata
        (ECSV/FITS header) and, for CSV, into columns.
        """
        path = Path(path)
        kind = path.suffix.lower().lstrip(".")
        if kind not in EXPORT_FORMATS:
            raise ValueError(f"{path.name}: export as .csv, .ecsv or .fits")
        frame = pd.concat([catalogue.reset_index(drop=True), self.as_frame(catalogue["object_id"])], axis=1)
        frame["model_version"] = self.model_version
        frame["exported_by"] = inspector
        table = Table.from_pandas(_plain_dtypes(frame))
        table.meta.update({"MODEL": self.model_version[:60], "INSPECTR": inspector[:60],
                           "DATE": datetime.now(UTC).isoformat(timespec="seconds"), **(extra_meta or {})})
        table.write(path, format=EXPORT_FORMATS[kind], overwrite=True)
        return path


def _plain_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas extension dtypes (string, category, nullable) as NumPy ones that every writer knows."""
    out = frame.copy()
    for name in out.columns:
        dtype = out[name].dtype
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) \
                or pd.api.types.is_object_dtype(dtype):
            out[name] = out[name].astype(str).replace({"<NA>": "", "nan": "", "None": ""}).to_numpy(dtype=str)
        elif pd.api.types.is_extension_array_dtype(dtype):
            out[name] = out[name].astype(float)
    return out
