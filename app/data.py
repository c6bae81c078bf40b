"""What the app shows: a results set, its spectra, and spectra uploaded in the page.

Everything scientific is done by ``mtopnet_core``: prediction, PDF metrics, saliency, the UMAP
map, FITS reading. This module keeps the loaded objects together, looks objects up by their
string ID, and adds uploaded spectra to the same catalogue.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mtopnet_core.embedding import MAP_COLUMNS, place_in_map, stored_map
from mtopnet_core.inference import TrainedModel, load_trained_model, predict
from mtopnet_core.results import Results, open_results, predictions_table
from mtopnet_core.saliency import saliency_for_spectra
from mtopnet_core.simulate.sky import load_sky_model
from mtopnet_core.spectra import Spectra
from mtopnet_core.store import Dataset, DatasetError, open_dataset

__all__ = ["AppData", "InspectedObject", "load_app_data", "UploadReport", "MAX_UPLOAD_BYTES", "APP_MC_PASSES"]

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 10**6
"""Largest FITS file accepted from the page (a MOONS 1D spectrum is ~0.3 MB); also checked after
gzip decompression, and the headers' announced sizes before any data is read."""
APP_MC_PASSES = 20
"""Monte Carlo dropout passes of the inspector's spread button (~1 s for one object on 2 cores)."""


@dataclass(frozen=True)
class InspectedObject:
    """One object for the inspector: its spectrum and the model's outputs for it.

    Attributes
    ----------
    spectrum : Spectra
        The object's spectrum, a core container of length 1.
    pdf : numpy.ndarray, shape (800,)
        Redshift PDF.
    line_probability : numpy.ndarray, shape (12217,)
        Probability of a Table 1 line per channel.
    """

    spectrum: Spectra
    pdf: np.ndarray
    line_probability: np.ndarray

    @property
    def object_id(self) -> str:
        return self.spectrum.names[0]


@dataclass
class UploadReport:
    """What happened to uploaded files: IDs added, and one message per file that could not be used."""

    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


_PER_SESSION = {"per_session": True}


class RowBlocks:
    """Rows of a stored array read in blocks, the most recently used blocks kept in memory.

    Shared by every session of a server (thread-safe): the solutions of a tapped object are
    listed on the server's event loop, and reading one PDF from the Zarr store took ~12 ms of it
    (the store's overhead, not the data: one block of 256 PDFs is 0.8 MB).

    Parameters
    ----------
    read : callable
        ``read(slice)`` -> numpy.ndarray, shape (rows in the slice, ...).
    n_rows : int
    rows_per_block, blocks_kept : int
        Memory held at most: ``blocks_kept`` x ``rows_per_block`` rows.
    """

    def __init__(self, read: Callable[[slice], np.ndarray], n_rows: int, rows_per_block: int = 256,
                 blocks_kept: int = 64) -> None:
        self._read, self._n_rows = read, n_rows
        self._rows_per_block, self._blocks_kept = rows_per_block, blocks_kept
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def row(self, row: int) -> np.ndarray:
        """One row (a view into a kept block: do not modify it)."""
        if not 0 <= row < self._n_rows:
            raise IndexError(f"row {row} outside 0..{self._n_rows - 1}")
        block, offset = divmod(int(row), self._rows_per_block)
        with self._lock:
            values = self._blocks.get(block)
            if values is not None:
                self._blocks.move_to_end(block)
        if values is None:
            start = block * self._rows_per_block
            values = self._read(slice(start, min(start + self._rows_per_block, self._n_rows)))
            with self._lock:
                self._blocks[block] = values
                while len(self._blocks) > self._blocks_kept:
                    self._blocks.popitem(last=False)
        return values[offset]


@dataclass
class AppData:
    """A results set with its spectra and model, and any uploaded spectra.

    Attributes
    ----------
    results : Results
    catalogue : pandas.DataFrame
        The results catalogue plus ``dz`` (z_peak - z_true), ``abs_dz`` and ``source``
        (``results`` or ``upload``); object_id is a string column, index 0..N-1.
    store : Dataset or None
        The spectra, when the results came from a store that is still there.
    model_path : pathlib.Path
    """

    results: Results
    catalogue: pd.DataFrame
    store: Dataset | None
    model_path: Path
    _uploads: dict[str, InspectedObject] = field(default_factory=dict, metadata=_PER_SESSION)
    _model: TrainedModel | None = None
    # latent vectors and map coordinates of the mapped objects, to place uploads among them
    _map_reference: tuple[np.ndarray, np.ndarray] | None = None
    # the stored PDFs, read in blocks and shared by every session
    _pdfs: RowBlocks | None = None
    # the inspector's views all ask for the current object: read it from the store once
    _last_spectrum: InspectedObject | None = field(default=None, metadata=_PER_SESSION)
    _row_index: dict[str, int] | None = field(default=None, metadata=_PER_SESSION)
    # redrawing with another smoothing must not recompute the gradient
    _last_saliency: tuple[str, int | None, np.ndarray] | None = field(default=None, metadata=_PER_SESSION)

    def __post_init__(self) -> None:
        if self._pdfs is None:  # made once per results set; the sessions' copies share it
            self._pdfs = RowBlocks(self.results.redshift_pdf, len(self.results.catalogue))

    def for_session(self) -> AppData:
        """This data for one browser session: the shared results, store, model and map (loaded
        once per process), with a catalogue of its own (uploads add rows) and every field marked
        per-session fresh (uploads, caches), so that one session never sees another's."""
        shared = {f.name: getattr(self, f.name) for f in fields(self)
                  if not f.metadata.get("per_session") and f.name != "catalogue"}
        return AppData(catalogue=self.catalogue.copy(), **shared)

    @property
    def model(self) -> TrainedModel:
        """The trained model, loaded on first use."""
        if self._model is None:
            self._model = load_trained_model(self.model_path)
        return self._model

    @property
    def model_version(self) -> str:
        return str(self.results.metadata.get("model", {}).get("version", self.model_path.name))

    def row_of(self, object_id: str) -> int:
        """Catalogue position of an object ID (KeyError if unknown)."""
        if self._row_index is None or len(self._row_index) != len(self.catalogue):
            # rows are only ever appended (uploads), so the size tells when to rebuild
            ids = self.catalogue["object_id"].astype(str)
            self._row_index = {object_id: row for row, object_id in reversed(list(enumerate(ids)))}
        try:
            return self._row_index[str(object_id)]
        except KeyError:
            raise KeyError(f"no object {object_id!r} in this catalogue") from None

    def spectrum(self, object_id: str) -> InspectedObject:
        """Spectrum (flux, error, mask, sky), PDF and line map of one object."""
        object_id = str(object_id)
        if object_id in self._uploads:
            return self._uploads[object_id]
        if self._last_spectrum is not None and self._last_spectrum.object_id == object_id:
            return self._last_spectrum
        row = self.row_of(object_id)
        source_row = int(self.catalogue["row"].iloc[row]) if "row" in self.catalogue else None
        if self.store is None or source_row is None:
            raise KeyError(f"{object_id}: its spectrum is not available (the results' store is not here)")
        spectrum = replace(self.store.spectra(np.array([source_row])), names=(object_id,))
        self._last_spectrum = InspectedObject(spectrum, self._pdfs.row(row).copy(),
                                              self.results.line_probability(np.array([row]))[0])
        return self._last_spectrum

    def pdf(self, object_id: str) -> np.ndarray:
        """Redshift PDF of one object, shape (800,): from the results alone, without the spectrum's
        much larger arrays (the solutions list needs only this, at once, on every tap)."""
        object_id = str(object_id)
        if object_id in self._uploads:
            return self._uploads[object_id].pdf
        if self._last_spectrum is not None and self._last_spectrum.object_id == object_id:
            return self._last_spectrum.pdf
        return self._pdfs.row(self.row_of(object_id)).copy()

    def saliency(self, spectrum: InspectedObject, z_bin: int | None = None) -> np.ndarray:
        """Saliency map of one spectrum for the PDF's peak (or ``z_bin``), shape (12217,)."""
        # the peak of the stored PDF is the model's peak: no forward pass needed to find it
        peak = int(np.argmax(spectrum.pdf)) if np.isfinite(spectrum.pdf).all() else None
        chosen = peak if z_bin is None else z_bin
        if self._last_saliency is not None and self._last_saliency[:2] == (spectrum.object_id, chosen):
            return self._last_saliency[2]
        bins = None if chosen is None else np.array([chosen])
        values = saliency_for_spectra(self.model, spectrum.spectrum, bins=bins)[0]
        self._last_saliency = (spectrum.object_id, chosen, values)
        return values

    def mc_dropout(self, spectrum: InspectedObject, passes: int = APP_MC_PASSES):
        """MC-dropout predictions of one spectrum (core :func:`~mtopnet_core.inference.predict`)."""
        return predict(self.model, spectrum.spectrum, mc_passes=passes)

    def add_fits(self, files: dict[str, bytes], max_bytes: int = MAX_UPLOAD_BYTES) -> UploadReport:
        """Validate, preprocess and predict uploaded FITS files, and add them to the catalogue.

        The files are read in memory and never written to disk; messages name them by their
        upload name only. A file that cannot be used is reported, never raised.
        """
        report = UploadReport()
        sources = []
        for name, content in files.items():
            shown = Path(str(name)).name[:120] or "upload"
            if not isinstance(content, bytes | bytearray):
                report.problems.append(f"{shown}: not a binary file")
            elif not content:
                report.problems.append(f"{shown}: empty file")
            elif len(content) > max_bytes:
                report.problems.append(f"{shown}: {len(content) / 1e6:.1f} MB is over the "
                                       f"{max_bytes / 1e6:.0f} MB limit")
            else:
                sources.append((shown, bytes(content)))
        if not sources:
            return report
        from mtopnet_core.fits_io import read_fits_batch  # astropy when files come, not with the first page

        spectra, read_problems = read_fits_batch(sources, load_sky_model().emission, max_bytes)
        names = spectra.names
        files_read = [name for name, _ in sources]
        predictions = predict(self.model, spectra)
        problems = [r or p for r, p in zip(read_problems, predictions.problems, strict=True)]
        taken = set(self.catalogue["object_id"].astype(str)) | set(self._uploads)
        table = predictions_table(predictions)
        keep = []
        for i, (file_name, problem) in enumerate(zip(files_read, problems, strict=True)):
            if problem:
                report.problems.append(problem if file_name in problem else f"{file_name}: {problem}")
                continue
            object_id = names[i]
            while object_id in taken:
                object_id = f"{names[i]} (upload {len(taken)})"
            taken.add(object_id)
            table.loc[i, "object_id"] = object_id
            self._uploads[object_id] = InspectedObject(replace(spectra[i], names=(object_id,)),
                                                       predictions.redshift_pdf[i], predictions.line_probability[i])
            keep.append(i)
            report.added.append(object_id)
        if keep:
            rows = table.iloc[keep].copy()
            rows["file"] = [files_read[i] for i in keep]
            rows["source"] = "upload"
            reference = self.map_reference
            if reference is not None:
                xy = place_in_map(*reference, predictions.embedding[keep])
                rows[MAP_COLUMNS[0]], rows[MAP_COLUMNS[1]] = xy[:, 0], xy[:, 1]
            self.catalogue = pd.concat([self.catalogue, rows], ignore_index=True)
            self.catalogue["object_id"] = self.catalogue["object_id"].astype("string")
        return report

    @property
    def map_reference(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Latent vectors (M, 192) and map coordinates (M, 2) of the results' mapped objects, or None."""
        if self._map_reference is None and set(MAP_COLUMNS) <= set(self.catalogue.columns):
            mapped = self.catalogue.index[(self.catalogue["source"] == "results")
                                         & self.catalogue[list(MAP_COLUMNS)].notna().all(axis=1)].to_numpy()
            if len(mapped):
                self._map_reference = (self.results.embedding(mapped),
                                       self.catalogue.loc[mapped, list(MAP_COLUMNS)].to_numpy(float))
        return self._map_reference


def load_app_data(results_path: str | Path, model_path: str | Path, map_file: str | Path | None = None) -> AppData:
    """Open a results folder (and its store, if reachable) for the app.

    Parameters
    ----------
    results_path, model_path : path-like
    map_file : path-like, optional
        The results' UMAP map kept in the app's data folder (:func:`mtopnet_core.embedding.save_map`),
        used when the catalogue has no map of its own.

    Raises
    ------
    mtopnet_core.errors.ResultsError
        If the results folder cannot be used.
    """
    results = open_results(results_path)
    catalogue = results.catalogue.copy()
    catalogue["source"] = "results"
    coordinates = None if set(MAP_COLUMNS) <= set(catalogue.columns) or map_file is None \
        else stored_map(catalogue, map_file)
    if coordinates is not None:
        for column in MAP_COLUMNS:
            catalogue[column] = coordinates[column].to_numpy()
    if "z_true" in catalogue:
        catalogue["dz"] = catalogue["z_peak"] - catalogue["z_true"]
        catalogue["abs_dz"] = catalogue["dz"].abs()
    store = None
    source = results.metadata.get("input", {})
    if source.get("kind") == "store":
        try:
            store = open_dataset(source["path"])
        except DatasetError as exc:
            logger.warning("spectra not available: %s", exc)
    if store is not None and "row" in catalogue and len(store) <= int(catalogue["row"].max()):
        logger.warning("%s has fewer spectra than the results; spectra not shown", store.path)
        store = None
    return AppData(results, catalogue, store, Path(model_path))
