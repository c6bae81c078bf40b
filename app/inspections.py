"""Visual-inspection records, one per change, kept in SQLite so that nothing is ever lost.

A record holds a quality flag with a fixed vocabulary (Marz-style 0-4), issue marks, an optional
corrected redshift, a comment and the inspector's name, keyed by the object ID as a string. Every
change is one row appended to an SQLite database in WAL mode (one file per results set in the
app's data folder): several server processes, and several inspectors, write to it at once
without overwriting each other, and a process killed mid-write leaves every committed change in
place (SQLite's journal rolls back the unfinished one). An object's current state is its latest
row; the earlier rows are its history. Inspection files of earlier versions (one JSON file per
results set) are imported on first opening and kept beside the store, renamed ``.migrated``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

__all__ = ["QUALITY_FLAGS", "ISSUE_MARKS", "Inspection", "InspectionStore", "EXPORT_FORMATS", "CONFLICT_DZ"]

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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id TEXT NOT NULL,
    quality INTEGER NOT NULL,
    issues TEXT NOT NULL,
    z_corrected REAL,
    comment TEXT NOT NULL,
    inspector TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_object ON changes (object_id, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FIELDS = [f.name for f in fields(Inspection)]
_INSERT = f"INSERT INTO changes (object_id, {', '.join(_FIELDS)}) VALUES (?{', ?' * len(_FIELDS)})"
_LATEST = (f"SELECT object_id, {', '.join(_FIELDS)} FROM changes WHERE id IN "
           "(SELECT MAX(id) FROM changes GROUP BY object_id)")
_LATEST_PER_INSPECTOR = (f"SELECT object_id, {', '.join(_FIELDS)} FROM changes WHERE id IN "
                         "(SELECT MAX(id) FROM changes WHERE inspector != '' GROUP BY object_id, inspector) "
                         "ORDER BY object_id, inspector")
CONFLICT_DZ = 0.01
"""Two inspectors' redshifts further apart than this disagree (the paper's success threshold)."""


class InspectionStore:
    """The inspections of one results set, persisted in an SQLite file.

    Parameters
    ----------
    path : pathlib.Path
        SQLite file (created with its folder if missing). A JSON inspection file of an earlier
        version at the same path with the suffix ``.json`` is imported once.
    model_version : str
        Written into every export.
    """

    def __init__(self, path: str | os.PathLike, model_version: str = "") -> None:
        self.path = Path(path)
        self.model_version = model_version
        self._local = threading.local()
        self._cache: dict[str, Inspection] | None = None
        self._cache_version: int | None = None
        self._cache_lock = threading.Lock()
        self._conflicts: tuple[tuple, pd.DataFrame] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection().executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            # keep the damaged file for the user; start a new store beside it
            self._local.db.close()
            self._local.db = None
            backup = self.path.with_suffix(f".unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S}{self.path.suffix}")
            os.replace(self.path, backup)
            logger.error("%s: unreadable inspections (%s); moved to %s", self.path, exc, backup.name)
            self._connection().executescript(_SCHEMA)
        self._migrate_json(self.path.with_suffix(".json"))

    # --- the database ------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections must not cross threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed flag survives a power cut too
        return db

    def _migrate_json(self, legacy: Path) -> None:
        """Import an inspection file of an earlier version (one JSON object of records), once."""
        if not legacy.is_file():
            return
        try:
            raw = json.loads(legacy.read_text())
            records = {str(k): Inspection(**v) for k, v in raw.get("records", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.error("%s: unreadable inspections of an earlier version (%s); left as they are", legacy, exc)
            return
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM meta WHERE key = 'migrated_from'").fetchone() is None:
                db.executemany(_INSERT, [(k, *_as_row(v)) for k, v in records.items()])
                db.execute("INSERT INTO meta VALUES ('migrated_from', ?)", (str(legacy),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        os.replace(legacy, legacy.with_suffix(".json.migrated"))
        logger.info("imported %d inspections from %s", len(records), legacy.name)

    # --- reading ----------------------------------------------------------------------------
    @property
    def records(self) -> dict[str, Inspection]:
        """Every object's current record (its latest change), re-read when any process has written."""
        db = self._connection()
        # rows are only ever appended: the last row's id tells whether anything changed
        version = db.execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()[0]
        with self._cache_lock:
            if self._cache is None or self._cache_version != version:
                self._cache = {row[0]: Inspection(*row[1:]) for row in db.execute(_LATEST)}
                self._cache_version = version
            return self._cache

    def get(self, object_id: str) -> Inspection:
        """The record of an object (a fresh, uninspected one if there is none)."""
        return self.records.get(str(object_id), Inspection())

    def history(self, object_id: str | None = None) -> pd.DataFrame:
        """Every change (of one object, or all), oldest first: object_id, the record's fields."""
        query = f"SELECT object_id, {', '.join(_FIELDS)} FROM changes"
        arguments: tuple = ()
        if object_id is not None:
            query, arguments = query + " WHERE object_id = ?", (str(object_id),)
        return pd.read_sql_query(query + " ORDER BY id", self._connection(), params=arguments)

    def per_inspector(self) -> pd.DataFrame:
        """Each inspector's latest record of each object they inspected (quality set): object_id and
        the record's fields, one row per (object, inspector)."""
        frame = pd.read_sql_query(_LATEST_PER_INSPECTOR, self._connection())
        return frame[frame["quality"] > 0].reset_index(drop=True)

    def conflicts(self, z_pipeline: pd.Series, dz: float = CONFLICT_DZ) -> pd.DataFrame:
        """The objects on which inspectors disagree, as Marz and DESI's visual inspection merge them.

        Two inspectors of an object disagree when their quality flags are more than one step
        apart, or when the redshifts they accept (their corrected redshift, else the pipeline's)
        are more than ``dz`` apart.

        Parameters
        ----------
        z_pipeline : pandas.Series
            The pipeline's redshift (z_peak), indexed by object ID (str).
        dz : float
            Redshifts closer than this agree.

        Returns
        -------
        pandas.DataFrame
            One row per disagreement, by object ID: ``n_inspectors``, ``inspectors``
            ("name: quality, z" for each), ``reason``; empty (same columns) when all agree.
        """
        # re-read only when any process has written (rows are only appended) or the catalogue grew
        version = self._connection().execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()[0]
        key = (version, dz, len(z_pipeline))
        if self._conflicts is not None and self._conflicts[0] == key:
            return self._conflicts[1]
        rows = []
        records = self.per_inspector()
        # only objects flagged by two or more inspectors can disagree (a loop over all would cost a tap ~0.1 s)
        shared = records.groupby("object_id")["inspector"].transform("nunique") >= 2
        for object_id, group in records[shared].groupby("object_id", sort=True):
            pipeline = float(z_pipeline.get(object_id, np.nan))
            accepted = group["z_corrected"].astype(float).fillna(pipeline).to_numpy()
            reasons = []
            if np.ptp(group["quality"].to_numpy()) > 1:
                reasons.append(f"quality {group['quality'].min()} to {group['quality'].max()}")
            if np.isfinite(accepted).any() and np.nanmax(accepted) - np.nanmin(accepted) > dz:
                reasons.append(f"z {np.nanmin(accepted):.4f} to {np.nanmax(accepted):.4f}")
            if reasons:
                who = "; ".join(f"{r.inspector}: {r.quality}, z {z:.4f}" for r, z in
                                zip(group.itertuples(), accepted, strict=True))
                rows.append({"object_id": object_id, "n_inspectors": int(group["inspector"].nunique()),
                             "inspectors": who, "reason": " and ".join(reasons)})
        table = pd.DataFrame(rows, columns=["object_id", "n_inspectors", "inspectors", "reason"])
        self._conflicts = (key, table)
        return table

    # --- writing ----------------------------------------------------------------------------
    def set(self, object_id: str, inspector: str = "", **changes) -> Inspection:
        """Change fields of an object's record: one new row, committed at once.

        The object's latest record is read in the same transaction, so that changes made by
        another process a moment before are kept.

        Raises
        ------
        ValueError
            For a flag, issue mark or redshift outside the vocabulary.
        """
        object_id = str(object_id)
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(f"SELECT {', '.join(_FIELDS)} FROM changes WHERE object_id = ? ORDER BY id DESC LIMIT 1",
                             (object_id,)).fetchone()
            current = Inspection(*row) if row else Inspection()
            record = Inspection(**{**asdict(current), **changes, "inspector": inspector,
                                   "updated": datetime.now(UTC).isoformat(timespec="seconds")})
            db.execute(_INSERT, (object_id, *_as_row(record)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return record

    def inspected(self) -> set[str]:
        """IDs of objects with a quality flag set."""
        return {k for k, v in self.records.items() if v.quality > 0}

    def qualities(self, object_ids) -> np.ndarray:
        """Quality flag per object ID (0 when not inspected), shape (N,); fast for large tables."""
        records = self.records
        return np.array([records[i].quality if i in records else 0 for i in map(str, object_ids)], dtype=int)

    def as_frame(self, object_ids: pd.Series) -> pd.DataFrame:
        """Inspection columns for the given object IDs, in their order."""
        records = self.records
        rows = [asdict(records.get(i, Inspection())) for i in object_ids.astype(str)]
        frame = pd.DataFrame(rows, columns=_FIELDS)
        frame.columns = [f"vi_{c}" for c in frame.columns]
        frame["vi_z_corrected"] = frame["vi_z_corrected"].astype(float)
        return frame

    def export(self, catalogue: pd.DataFrame, path: str | os.PathLike, inspector: str = "",
               extra_meta: dict | None = None) -> Path:
        """Write the catalogue with the inspection columns (CSV, ECSV or FITS, by the file's suffix).

        The merged result of every inspector: each object's latest record (``vi_*``), who
        inspected it (``vi_inspectors``, ``vi_n_inspectors``) and, where they disagree
        (:meth:`conflicts`), why (``vi_conflict``; empty where they agree). Object IDs stay
        strings; the model version, exporting inspector, date and number of disagreements go
        into the metadata (ECSV/FITS header) and, for CSV, the first two into columns.
        """
        path = Path(path)
        kind = path.suffix.lower().lstrip(".")
        if kind not in EXPORT_FORMATS:
            raise ValueError(f"{path.name}: export as .csv, .ecsv or .fits")
        frame = pd.concat([catalogue.reset_index(drop=True), self.as_frame(catalogue["object_id"])], axis=1)
        ids = frame["object_id"].astype(str)
        names = {object_id: sorted(set(group)) for object_id, group in
                 self.per_inspector().groupby("object_id")["inspector"]}
        frame["vi_inspectors"] = [", ".join(names.get(i, [])) for i in ids]
        frame["vi_n_inspectors"] = np.array([len(names.get(i, [])) for i in ids], dtype=int)
        z_pipeline = pd.Series(catalogue["z_peak"].to_numpy(float) if "z_peak" in catalogue else np.nan,
                               index=ids)
        reasons = dict(self.conflicts(z_pipeline)[["object_id", "reason"]].itertuples(index=False))
        frame["vi_conflict"] = [reasons.get(i, "") for i in ids]
        frame["model_version"] = self.model_version
        frame["exported_by"] = inspector
        table = Table.from_pandas(_plain_dtypes(frame))
        for name in table.colnames:
            unit, description = column_unit(name)
            table[name].unit = unit or None
            table[name].description = description or None
        # whole values: astropy writes long FITS strings on CONTINUE cards
        table.meta.update({"MODEL": self.model_version, "INSPECTR": inspector,
                           "DATE": datetime.now(UTC).isoformat(timespec="seconds"),
                           "NCONFLCT": int((frame["vi_conflict"] != "").sum()), **(extra_meta or {})})
        table.write(path, format=EXPORT_FORMATS[kind], overwrite=True)
        return path


_UNITS = {"t_exp_h": "h", "m_h": "mag", "m_h_continuum": "mag", "a_v": "mag", "ebv_star": "mag", "ebv_gas": "mag",
          "r_eff_arcsec": "arcsec", "sigma_gas_kms": "km / s", "sigma_star_kms": "km / s"}
# logarithms get a description instead: FITS cannot store function units such as dex(solMass)
_UNIT_PREFIXES = (("log_mstar", "", "log10 of the stellar mass in Msun"),
                  ("log_sfr", "", "log10 of the star-formation rate in Msun/yr"), ("flux_", "erg / (s cm2)", ""))


def column_unit(name: str) -> tuple[str, str]:
    """The astropy unit string and the description of an exported column ('' where none)."""
    if name in _UNITS:
        return _UNITS[name], ""
    for prefix, unit, description in _UNIT_PREFIXES:
        if name.startswith(prefix):
            return unit, description
    return "", ""


def _as_row(record: Inspection) -> tuple:
    """A record's fields in the database's column order."""
    return tuple(getattr(record, name) for name in _FIELDS)


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
