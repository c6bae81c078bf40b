"""The results folder written by ``mtopnet predict`` and read by ``mtopnet evaluate`` and the app.

Layout::

    results.json        format, model version and metadata, input, MC-dropout passes, status
    catalogue.parquet   one row per input spectrum: object_id (str), source (store row or FITS
                        file), PDF summary (z_peak, z_second, p_second, entropy, skewness, rms,
                        pdf_width, p_within_0p01), log_mstar_pred, log_sfr_pred (+ spreads with
                        MC dropout), coverage (fraction of the grid with usable data), problem
                        (why a spectrum was not processed, else empty), flags (why its outputs
                        lie outside the model's training domain, else empty);
                        for a mock store also the truth (z_true, log_mstar_true, log_sfr_true)
                        and the simulator's other columns (m_h, t_exp_h, galaxy_class, ...)
    predictions.zarr/   redshift_pdf (N, 800) float32 [+ redshift_pdf_spread],
                        line_probability (N, 12217) uint8 (probability x 255, rounded: the
                        line-location map is for display and compresses 10x better),
                        embedding (N, 192) float32; chunks of 256 rows

The catalogue may also hold the UMAP map's coordinates, umap_x and umap_y
(:mod:`mtopnet_core.embedding`). Older results folders may hold an ``embedding_map.joblib``
(a pickled reducer): it is never loaded, since unpickling runs code.

Rows of spectra that could not be processed hold NaN (zero in ``line_probability``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from mtopnet_core import __version__, grid
from mtopnet_core.errors import ResultsError
from mtopnet_core.inference import Predictions
from mtopnet_core.jsonio import atomic_path, read_json, temporary_glob, write_json_atomic
from mtopnet_core.stored_chunks import ChunkedRows
from mtopnet_core.tasks import SCALAR_TASKS

__all__ = ["ResultsError", "ResultsWriter", "Results", "open_results", "predictions_table", "quantise_line_probability",
           "write_prediction_arrays", "TRUTH_COLUMNS", "CHUNK_ROWS"]

logger = logging.getLogger(__name__)

FORMAT = "mtopnet-results"
FORMAT_VERSION = 1
CHUNK_ROWS = 256
TRUTH_COLUMNS = {"z": "z_true", **{t.name: f"{t.name}_true" for t in SCALAR_TASKS}}
"""Simulator catalogue columns renamed in the results, so that truth and prediction never mix up."""


def predictions_table(predictions: Predictions) -> pd.DataFrame:
    """The per-object columns of a batch of predictions.

    Returns
    -------
    pandas.DataFrame
        One row per spectrum: object_id, the PDF summary, each scalar task's prediction
        (``log_mstar_pred``, ``log_sfr_pred``, dex) and its MC-dropout spread when present
        (``log_mstar_spread``, ...), coverage, problem (empty string when processed) and flags.
    """
    summary = predictions.summary
    spreads = predictions.quantity_spreads
    # built in one call: each column added afterwards costs pandas a block insert and an index check
    return pd.DataFrame({
        "object_id": pd.array(predictions.names, dtype="string"),
        "z_peak": summary.z_peak, "z_second": summary.z_second, "p_second": summary.p_second,
        "entropy": summary.entropy, "skewness": summary.skewness, "rms": summary.rms,
        "pdf_width": summary.width, "p_within_0p01": summary.p_within_0p01,
        **{t.result_column: predictions.quantities[t.name] for t in SCALAR_TASKS},
        **({f"{t.name}_spread": spreads[t.name] for t in SCALAR_TASKS} if spreads is not None else {}),
        "coverage": predictions.coverage,
        "problem": pd.array([p or "" for p in predictions.problems], dtype="string"),
        "flags": pd.array(predictions.flags, dtype="string"),
    })


def quantise_line_probability(probability: np.ndarray) -> np.ndarray:
    """Line-location probabilities as stored: uint8, probability x 255 rounded (NaN -> 0); uint8 input is kept."""
    if probability.dtype == np.uint8:
        return probability
    scaled = np.multiply(probability, 255, dtype=np.float32)
    # fmax/fmin read NaN as missing: NaN -> 0, and the clip to [0, 255] in the same two passes
    np.fmin(np.fmax(scaled, 0, out=scaled), 255, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _writable_arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    # Zarr's default skips a chunk that is all fill value, after testing every value (12 ms per
    # chunk of the line map); every chunk is written instead (BENCHMARKS.md)
    return {name: group[name].with_config({"write_empty_chunks": True}) for name in group.array_keys()}


def write_prediction_arrays(results: str | os.PathLike, start: int,
                            predictions: Predictions | Sequence[Predictions]) -> None:
    """Store one block of predictions in a results folder's arrays.

    Prediction threads (or processes) write their own rows: blocks that cover whole chunks of
    the arrays (:attr:`ResultsWriter.chunk_rows`) never share a chunk and may be written
    concurrently. Their chunks are encoded and written here (:meth:`ChunkedRows.write`); other
    rows, and arrays with codecs not written here, go through Zarr.

    Parameters
    ----------
    results : str or path-like
        The results folder.
    start : int
        First row.
    predictions : Predictions, or a sequence of them
        The block, or consecutive pieces of it (joined here).
    """
    pieces = [predictions] if isinstance(predictions, Predictions) else list(predictions)
    root = Path(results) / "predictions.zarr"
    values = {"redshift_pdf": [p.redshift_pdf for p in pieces], "embedding": [p.embedding for p in pieces],
              "line_probability": [quantise_line_probability(p.line_probability) for p in pieces]}
    if (root / "redshift_pdf_spread").is_dir():
        values["redshift_pdf_spread"] = [p.redshift_pdf_spread for p in pieces]
    stop = start + sum(len(p.names) for p in pieces)
    through_zarr = {}
    for name, parts in values.items():
        block = parts[0] if len(parts) == 1 else np.concatenate(parts)
        rows = ChunkedRows.open(root / name)
        whole = rows is not None and rows.writable and start % rows.chunk_rows == 0 and \
            ((stop - start) % rows.chunk_rows == 0 or stop == rows.shape[0])
        if not whole:
            through_zarr[name] = block
            continue
        for first in range(start, stop, rows.chunk_rows):
            rows.write(first, block[first - start:first - start + rows.chunk_rows])
    if through_zarr:
        arrays = _writable_arrays(zarr.open_group(root, mode="r+"))
        for name, block in through_zarr.items():
            arrays[name][start:stop] = block


_RESUME_KEYS = ("input", "mc_passes", "model", "n_spectra", "format_version")
"""Metadata that must match for an unfinished results folder to be resumed."""


class ResultsWriter:
    """Write a results folder chunk by chunk (bounded memory), resumably, then its catalogue.

    Each finished block's catalogue rows are saved at once in ``parts/`` (after its arrays), so
    that a run that stops (Ctrl-C, ``kill -9``, a power cut) resumes with the blocks still to do:
    :attr:`done` lists the blocks already written.

    Parameters
    ----------
    path : str or path-like
        New folder, an unfinished results folder of the same input and model (resumed), or an
        existing results folder with ``overwrite``.
    n : int
        Number of spectra.
    metadata : dict
        Model and input provenance, stored in ``results.json``.
    mc_spread : bool
        Also store the MC-dropout spread of the PDFs.
    overwrite : bool
        Replace an existing results folder (never a folder of anything else).
    chunk_rows : int
        Rows per stored chunk (default 256); blocks written by separate processes must be
        aligned on it.
    embedding_size : int
        Length of the model's embedding (:attr:`~mtopnet_core.inference.TrainedModel.embedding_size`).
    """

    def __init__(self, path: str | os.PathLike, n: int, metadata: dict, mc_spread: bool = False,
                 overwrite: bool = False, chunk_rows: int = CHUNK_ROWS, *, embedding_size: int) -> None:
        self.path = Path(path)
        self.metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "code_version": __version__,
                         "n_spectra": int(n), "status": "writing", **metadata}
        self.chunk_rows = rows = min(chunk_rows, max(n, 1))
        self._tables: dict[int, pd.DataFrame] = {}
        self.n_not_processed = 0
        if self._resumable(overwrite):
            for stray in (self.path / "predictions.zarr").glob(f"*/c/*/{temporary_glob('0')}"):
                stray.unlink(missing_ok=True)  # a chunk being written when the run was killed
            for part in sorted((self.path / "parts").glob("*.parquet")):
                try:
                    table = pd.read_parquet(part)
                except (OSError, ValueError):
                    part.unlink()  # a damaged part: its block is done again
                    continue
                self._tables[int(part.stem)] = table
                self.n_not_processed += int((table["problem"] != "").sum())
            logger.info("%s: resuming, %d of %d rows already predicted", self.path,
                        sum(map(len, self._tables.values())), n)
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / "results.json", self.metadata)
        group = zarr.open_group(self.path / "predictions.zarr", mode="w")
        group.create_array("redshift_pdf", shape=(n, grid.N_Z_BINS), chunks=(rows, grid.N_Z_BINS),
                           dtype="float32", fill_value=np.nan)
        group.create_array("line_probability", shape=(n, grid.N_CHANNELS), chunks=(rows, grid.N_CHANNELS),
                           dtype="uint8")
        group.create_array("embedding", shape=(n, embedding_size), chunks=(rows, embedding_size),
                           dtype="float32", fill_value=np.nan)
        if mc_spread:
            group.create_array("redshift_pdf_spread", shape=(n, grid.N_Z_BINS), chunks=(rows, grid.N_Z_BINS),
                               dtype="float32", fill_value=np.nan)
        (self.path / "parts").mkdir()

    def _resumable(self, overwrite: bool) -> bool:
        """Whether ``path`` is an unfinished run of the same work; clears what may be replaced."""
        if self.path.exists() and not self.path.is_dir():
            raise ResultsError(f"{self.path}: exists and is not a folder")
        if not self.path.is_dir() or not any(self.path.iterdir()):
            return False
        if not (self.path / "results.json").is_file():
            raise ResultsError(f"{self.path}: not empty and not an M-TOPnet results folder; choose another folder")
        old = read_json(self.path / "results.json", ResultsError, "results metadata")
        same = json.loads(json.dumps({k: self.metadata.get(k) for k in _RESUME_KEYS}, default=str)) == \
            {k: old.get(k) for k in _RESUME_KEYS}
        if not overwrite and old.get("status") == "writing" and same and (self.path / "parts").is_dir():
            return True
        if not overwrite:
            what = "holds results already" if old.get("status") == "complete" else \
                "holds an unfinished run of another input, model or settings"
            raise ResultsError(f"{self.path}: {what}; choose another folder or replace it (overwrite)")
        shutil.rmtree(self.path)
        return False

    @property
    def done(self) -> set[int]:
        """First rows of the blocks already written."""
        return set(self._tables)

    def write(self, start: int, predictions: Predictions, extra: pd.DataFrame | None = None) -> None:
        """Store the predictions for rows ``start`` to ``start + len(predictions.names)``.

        Parameters
        ----------
        start : int
            First row.
        predictions : Predictions
        extra : pandas.DataFrame, optional
            More columns for these rows (source, truth), same length, any index.
        """
        write_prediction_arrays(self.path, start, predictions)
        self.add_table(start, predictions_table(predictions), extra)

    def add_table(self, start: int, table: pd.DataFrame, extra: pd.DataFrame | None = None) -> None:
        """Add the catalogue rows of a block whose arrays are written (here, or by
        :func:`write_prediction_arrays` in a prediction thread), and save them for a resume.

        Parameters
        ----------
        start : int
            First row.
        table : pandas.DataFrame
            :func:`predictions_table` of the block.
        extra : pandas.DataFrame, optional
            More columns for these rows, same length, any index.
        """
        if extra is not None:
            table = pd.concat([table, extra.reset_index(drop=True)], axis=1)
        with atomic_path(self.path / "parts" / f"{start:012d}.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        self._tables[start] = table
        self.n_not_processed += int((table["problem"] != "").sum())

    def close(self, **summary) -> Path:
        """Write the catalogue and mark the folder complete; ``summary`` goes into results.json."""
        catalogue = pd.concat([self._tables[k] for k in sorted(self._tables)], ignore_index=True)
        if len(catalogue) != self.metadata["n_spectra"]:
            raise ResultsError(f"{self.path}: {len(catalogue)} rows written of {self.metadata['n_spectra']}")
        with atomic_path(self.path / "catalogue.parquet") as tmp:
            catalogue.to_parquet(tmp, index=False)
        self.metadata.update(status="complete", n_not_processed=self.n_not_processed, **summary)
        write_json_atomic(self.path / "results.json", self.metadata)
        shutil.rmtree(self.path / "parts", ignore_errors=True)
        return self.path


@dataclass
class Results:
    """An opened results folder.

    Attributes
    ----------
    path : pathlib.Path
    metadata : dict
    catalogue : pandas.DataFrame
        One row per spectrum (see the module docstring); ``object_id`` is a string column.
    """

    path: Path
    metadata: dict
    catalogue: pd.DataFrame

    @property
    def _group(self) -> zarr.Group:
        return zarr.open_group(self.path / "predictions.zarr", mode="r")

    def mc_screening(self) -> dict | None:
        """The model's record of the screening of MC-dropout PDFs (``mtopnet calibrate --mc-passes``:
        passes, catastrophic_target, entropy_max, ...) when it was made for this run's number of
        passes; None for single-pass results, other passes, or a model without one."""
        record = (self.metadata.get("model") or {}).get("mc_screening") or {}
        passes = int(self.metadata.get("mc_passes") or 0)
        return record if passes and record.get("passes") == passes else None

    def mc_entropy_cut(self) -> float | None:
        """The entropy cut of :meth:`mc_screening` (None without one, or where no cut met its target)."""
        return (self.mc_screening() or {}).get("entropy_max")

    def redshift_pdf(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Redshift PDFs, shape (n, 800), probability per bin."""
        return self._read("redshift_pdf", rows)

    def redshift_pdf_spread(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray | None:
        """MC-dropout spread of the PDFs, or None when the run had no MC dropout."""
        return self._read("redshift_pdf_spread", rows) if "redshift_pdf_spread" in self._group else None

    def line_probability(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Line-location probabilities, shape (n, 12217), float32 in [0, 1] (steps of 1/255)."""
        return self._read("line_probability", rows).astype(np.float32) / 255

    def embedding(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Latent vectors, shape (n, 192)."""
        return self._read("embedding", rows)

    def _read(self, name: str, rows: slice | np.ndarray) -> np.ndarray:
        array = self._group[name]
        if isinstance(rows, slice):
            return array[rows]
        rows = np.asarray(rows, dtype=int)
        return array.get_orthogonal_selection((rows, slice(None)))

    def replace_catalogue(self, catalogue: pd.DataFrame, **metadata) -> None:
        """Rewrite the catalogue (same rows, more columns) atomically; ``metadata`` goes into results.json."""
        if len(catalogue) != len(self.catalogue) or not catalogue["object_id"].equals(self.catalogue["object_id"]):
            raise ResultsError(f"{self.path}: a new catalogue must keep the rows and their order")
        with atomic_path(self.path / "catalogue.parquet") as tmp:
            catalogue.to_parquet(tmp, index=False)
        self.catalogue = catalogue
        self.metadata.update(metadata)
        write_json_atomic(self.path / "results.json", self.metadata)


def open_results(path: str | os.PathLike) -> Results:
    """Open a results folder written by ``mtopnet predict``.

    Raises
    ------
    ResultsError
        If the folder is missing, unfinished or not a results folder.
    """
    path = Path(path)
    meta_path = path / "results.json"
    if not meta_path.is_file():
        raise ResultsError(f"{path}: not an M-TOPnet results folder (no results.json)")
    meta = read_json(meta_path, ResultsError, "results metadata")
    if meta.get("format") != FORMAT:
        raise ResultsError(f"{meta_path}: not M-TOPnet results")
    if meta.get("status") != "complete":
        raise ResultsError(f"{path}: unfinished results (the prediction run stopped); run the same "
                           "`mtopnet predict` command again to resume it")
    try:
        catalogue = pd.read_parquet(path / "catalogue.parquet")
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path / 'catalogue.parquet'}: unreadable ({exc})") from None
    catalogue["object_id"] = catalogue["object_id"].astype("string")
    return Results(path, meta, catalogue)
