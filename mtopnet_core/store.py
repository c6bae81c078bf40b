"""The data set store: chunked, compressed spectra (Zarr) with the catalogue beside them (Parquet).

Layout of a data set folder::

    dataset.json            metadata: format, size, seed, settings, grid fingerprint, status
    spectra.zarr/           Zarr v3 group: flux, error (float32), mask (uint8), all (N, 12217),
                            chunked by rows; wavelength (12217,) and sky (12217,) per data set
    catalogue.parquet       one row per spectrum, in row order; object IDs are strings
    parts/                  per-chunk catalogue parts while the data set is being written

A chunk is written whole by one worker, and its catalogue part is renamed into ``parts/`` only
after its spectra are on disk: a chunk without a part is redone on resume, never trusted. Dask
reads the arrays natively: ``dask.array.from_zarr(path / "spectra.zarr", component="flux")``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from mtopnet_core import __version__, grid
from mtopnet_core.conventions import FLUX_UNIT_STRING
from mtopnet_core.errors import MtopnetError
from mtopnet_core.jsonio import atomic_path, read_json, write_json_atomic
from mtopnet_core.spectra import Spectra
from mtopnet_core.stored_chunks import ChunkDamaged, ChunkedRows

__all__ = ["DatasetError", "Dataset", "create_dataset", "write_chunk", "finalize_dataset",
           "open_dataset", "read_metadata", "FORMAT_NAME", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "mtopnet-dataset"
FORMAT_VERSION = 1
_ARRAYS = {"flux": np.float32, "error": np.float32, "mask": np.uint8}
_NOISE_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
_CHECKSUM = Crc32cCodec()
_COMPRESSORS = {"flux": (_NOISE_CODEC, _CHECKSUM), "error": (_NOISE_CODEC, _CHECKSUM),
                "mask": (ZstdCodec(), _CHECKSUM)}
"""Per array: flux and error are float noise, which zstd (Zarr's default) shrinks only to ~86%
and decodes at ~0.19 ms per spectrum; byte-shuffled LZ4 keeps ~77% (the errors' exponent bytes
compress) and decodes in ~0.08 ms (BENCHMARKS.md). The mask, mostly zeros, keeps zstd. Every
chunk ends with a CRC-32C checked before it is decoded: Blosc trusts the sizes in a chunk's own
header, so a truncated chunk could make it read past the end of the file's bytes (a crash, not an
error), and a flipped byte in LZ4 data can decode to wrong numbers without any error. Data sets
written with zstd alone read as before: each array records its codecs."""
_WRITE_CONFIG = {"write_empty_chunks": True}
"""An all-zero chunk must still exist on disk, or it would read as missing."""


class DatasetError(MtopnetError, RuntimeError):
    """A data set folder is missing, incomplete, corrupt or not a data set."""


def read_metadata(path: Path) -> dict:
    """Read ``dataset.json`` of a data set folder.

    Raises
    ------
    DatasetError
        If the folder has no readable metadata of this format.
    """
    meta_path = Path(path) / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{path}: not an M-TOPnet data set (no dataset.json)")
    meta = read_json(meta_path, DatasetError, "metadata")
    if meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{meta_path}: not an M-TOPnet data set (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{meta_path}: data set format version {meta.get('format_version')} "
                           f"is not supported (this code reads version {FORMAT_VERSION})")
    return meta


def create_dataset(path: Path, n_spectra: int, chunk_size: int, metadata: dict,
                   sky: np.ndarray) -> None:
    """Create an empty data set folder ready for :func:`write_chunk`.

    Parameters
    ----------
    path : pathlib.Path
        Folder to create (it may exist and be empty).
    n_spectra : int
        Number of spectra the data set will hold.
    chunk_size : int
        Spectra per chunk.
    metadata : dict
        Extra JSON-serialisable metadata (seed, settings, provenance).
    sky : numpy.ndarray, shape (12217,)
        Sky model used, photons/s/cm^2/A/arcsec^2.
    """
    path.mkdir(parents=True, exist_ok=True)
    root = zarr.open_group(path / "spectra.zarr", mode="w")
    for name, dtype in _ARRAYS.items():
        root.create_array(name, shape=(n_spectra, grid.N_CHANNELS), chunks=(chunk_size, grid.N_CHANNELS),
                          dtype=dtype, fill_value=0, compressors=_COMPRESSORS[name])
    root.create_array("wavelength", data=np.asarray(grid.wavelength_grid()))
    root.create_array("sky", data=np.asarray(sky, dtype=np.float64))
    root.attrs.update({"flux_unit": FLUX_UNIT_STRING, "wavelength_unit": "Angstrom (vacuum)",
                       "sky_unit": "photon / (s cm2 Angstrom arcsec2)"})
    (path / "parts").mkdir(exist_ok=True)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "code_version": __version__,
        "n_spectra": int(n_spectra),
        "chunk_size": int(chunk_size),
        "n_channels": grid.N_CHANNELS,
        "grid_fingerprint": grid.grid_fingerprint(),
        "status": "in-progress",
        **metadata,
    }
    write_json_atomic(path / "dataset.json", meta)


def chunk_part_path(path: Path, chunk: int) -> Path:
    """Path of the catalogue part that marks ``chunk`` as complete."""
    return Path(path) / "parts" / f"chunk_{chunk:06d}.parquet"


def write_chunk(path: Path, chunk: int, chunk_size: int, flux: np.ndarray, error: np.ndarray,
                mask: np.ndarray, catalogue: pd.DataFrame) -> None:
    """Write one chunk of spectra, then mark it complete with its catalogue part.

    Parameters
    ----------
    path : pathlib.Path
        Data set folder made by :func:`create_dataset`.
    chunk : int
        Chunk number; rows ``chunk * chunk_size`` onwards.
    chunk_size : int
    flux, error : numpy.ndarray, shape (n, 12217), float32
        1e-17 erg/s/cm^2/A.
    mask : numpy.ndarray, shape (n, 12217), uint8
    catalogue : pandas.DataFrame, n rows
        Catalogue rows of these spectra.
    """
    start = chunk * chunk_size
    stop = start + len(catalogue)
    root = zarr.open_group(path / "spectra.zarr", mode="r+")
    for name, values in (("flux", flux), ("error", error), ("mask", mask)):
        root[name].with_config(_WRITE_CONFIG)[start:stop] = values
    with atomic_path(chunk_part_path(path, chunk)) as tmp:
        catalogue.to_parquet(tmp, index=False)


def completed_chunks(path: Path) -> set[int]:
    """Chunk numbers whose catalogue part exists."""
    return {int(p.stem.split("_")[1]) for p in (Path(path) / "parts").glob("chunk_*.parquet")}


def finalize_dataset(path: Path) -> None:
    """Join the catalogue parts into ``catalogue.parquet`` and mark the data set complete.

    Raises
    ------
    DatasetError
        If a chunk is missing.
    """
    meta = read_metadata(path)
    n_chunks = -(-meta["n_spectra"] // meta["chunk_size"])
    missing = sorted(set(range(n_chunks)) - completed_chunks(path))
    if missing:
        raise DatasetError(f"{path}: {len(missing)} of {n_chunks} chunks not written yet")
    parts = [pd.read_parquet(chunk_part_path(path, c)) for c in range(n_chunks)]
    catalogue = pd.concat(parts, ignore_index=True)
    with atomic_path(path / "catalogue.parquet") as tmp:
        catalogue.to_parquet(tmp, index=False)
    meta["status"] = "complete"
    write_json_atomic(path / "dataset.json", meta)
    shutil.rmtree(path / "parts")


@dataclass
class Dataset:
    """A complete data set opened for lazy reading.

    Attributes
    ----------
    path : pathlib.Path
    metadata : dict
        Contents of ``dataset.json``.
    catalogue : pandas.DataFrame
        One row per spectrum, in row order.
    """

    path: Path
    metadata: dict
    catalogue: pd.DataFrame

    def __len__(self) -> int:
        return len(self.catalogue)

    @property
    def _group(self) -> zarr.Group:
        return zarr.open_group(self.path / "spectra.zarr", mode="r")

    @cached_property
    def wavelength(self) -> np.ndarray:
        """Pixel-centre wavelengths, Angstrom (vacuum), shape (12217,)."""
        return self._group["wavelength"][:]

    @cached_property
    def sky(self) -> np.ndarray:
        """Sky model of the data set, photons/s/cm^2/A/arcsec^2, shape (12217,)."""
        return self._group["sky"][:]

    @cached_property
    def _chunked_rows(self) -> dict[str, ChunkedRows | None]:
        """Per array, its reader for runs of rows outside Zarr (None: Zarr reads it)."""
        return {name: ChunkedRows.open(self.path / "spectra.zarr" / name) for name in _ARRAYS}

    def array(self, name: str) -> zarr.Array:
        """The lazy Zarr array ``flux``, ``error`` or ``mask``, shape (N, 12217)."""
        return self._group[name]

    def read(self, rows: slice | np.ndarray) -> dict[str, np.ndarray]:
        """Read some rows of flux, error and mask into memory.

        Parameters
        ----------
        rows : slice or numpy.ndarray of int
            Row numbers (positions in the catalogue).

        Returns
        -------
        dict with ``flux``, ``error`` (float32, 1e-17 erg/s/cm^2/A) and ``mask`` (uint8),
        each of shape (n, 12217).
        """
        run = rows.indices(len(self)) if isinstance(rows, slice) else None
        group = None
        out = {}
        for name in _ARRAYS:
            reader = self._chunked_rows[name]
            try:
                if reader is not None and run is not None and run[2] == 1:
                    out[name] = reader.read(run[0], run[1])
                    continue
                group = self._group if group is None else group
                if isinstance(rows, slice):
                    out[name] = group[name][rows]
                else:
                    out[name] = group[name].get_orthogonal_selection((np.asarray(rows), slice(None)))
            except Exception as exc:  # noqa: BLE001 - any codec or I/O failure means a damaged chunk
                raise DatasetError(f"{self.path / 'spectra.zarr' / name}: rows {_describe(rows, len(self))} "
                                   f"unreadable, a chunk is damaged ({_reason(exc)}); "
                                   "simulate or copy the data set again") from None
        return out

    def spectra(self, rows: slice | np.ndarray) -> Spectra:
        """Some rows as a :class:`~mtopnet_core.spectra.Spectra` container, named by their object IDs.

        Parameters
        ----------
        rows : slice or numpy.ndarray of int
            Row numbers (positions in the catalogue).
        """
        arrays = self.read(rows)
        names = self.catalogue["object_id"].iloc[rows].astype(str).tolist()
        return Spectra(flux=arrays["flux"], sky=self.sky, error=arrays["error"], mask=arrays["mask"],
                       names=names, wavelength=self.wavelength)

    def iter_chunks(self) -> Iterator[Spectra]:
        """Yield the spectra one stored chunk at a time (bounded memory)."""
        size = self.metadata["chunk_size"]
        for start in range(0, len(self), size):
            yield self.spectra(slice(start, min(start + size, len(self))))

    def to_dask(self, name: str = "flux"):
        """A Dask array view of ``flux``, ``error`` or ``mask`` (chunks as stored)."""
        import dask.array as da

        return da.from_zarr(str(self.path / "spectra.zarr"), component=name)


def _describe(rows: slice | np.ndarray, n: int) -> str:
    """Rows as a short text for messages ("256-511", or the first and last of a selection)."""
    if isinstance(rows, slice):
        start, stop, _ = rows.indices(n)
        return f"{start}-{stop - 1}"
    rows = np.asarray(rows)
    return f"{rows.min()}-{rows.max()}" if rows.size else "(none)"


def _reason(exc: Exception) -> str:
    """Why a chunk could not be read, in a few words (Zarr's checksum message carries raw bytes)."""
    if isinstance(exc, ChunkDamaged):
        return str(exc)
    if "checksum" in str(exc).lower():
        return "its checksum does not match"
    return f"{type(exc).__name__}: {exc}"


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a complete data set, checking that nothing is missing or truncated.

    Parameters
    ----------
    path : str or path-like
        Data set folder.

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        If the folder is not a data set, was not finished, was made for another wavelength grid,
        or has missing chunks or catalogue rows.
    """
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("status") != "complete":
        raise DatasetError(f"{path}: data set is incomplete (interrupted while being written?); "
                           "run the same `mtopnet simulate` command again to finish it")
    if meta.get("grid_fingerprint") != grid.grid_fingerprint():
        raise DatasetError(f"{path}: data set was made on another wavelength grid")
    try:
        catalogue = pd.read_parquet(path / "catalogue.parquet")
        group = zarr.open_group(path / "spectra.zarr", mode="r")
        arrays = {name: group[name] for name in _ARRAYS}
    except Exception as exc:  # noqa: BLE001 - any read failure means a damaged data set
        raise DatasetError(f"{path}: cannot read data set ({type(exc).__name__}: {exc})") from exc
    n = meta["n_spectra"]
    if len(catalogue) != n:
        raise DatasetError(f"{path}: catalogue has {len(catalogue)} rows, expected {n}")
    for name, array in arrays.items():
        if array.shape != (n, grid.N_CHANNELS):
            raise DatasetError(f"{path}: array {name} has shape {array.shape}, expected {(n, grid.N_CHANNELS)}")
        if array.nchunks_initialized != array.nchunks:
            raise DatasetError(f"{path}: array {name} is truncated "
                               f"({array.nchunks_initialized} of {array.nchunks} chunks on disk)")
    return Dataset(path=path, metadata=meta, catalogue=catalogue)
