"""Rows of a stored array read and written chunk by chunk in the calling thread: the fast path of
:meth:`mtopnet_core.store.Dataset.read`, of training batches (:meth:`ChunkedRows.take` reads
a batch's rows where they lie in the training cache's uncompressed chunk files), and of the
prediction threads' results (:meth:`ChunkedRows.write`).

Zarr 3 hands every read to its event-loop thread and a pool of codec threads. With two prediction
threads reading at once that cost 0.1-0.3 ms per spectrum (and GIL switches that slowed the
other stages), against ~0.05 ms for the same chunks read and decoded here (BENCHMARKS.md,
2026-12-04). The arrays of a data set are written by :mod:`mtopnet_core.store` with a short,
known codec chain, which this module decodes with the libraries Zarr itself uses for it
(numcodecs' Blosc and Zstd, google-crc32c). An array with any other layout or codec is left to
Zarr (:meth:`ChunkedRows.open` returns None), so the values are the same either way (tests).
Writing a whole chunk here (6-7 ms for a prediction thread's results) rather than through Zarr
(18-26 ms: its event loop, and the group opened per chunk) took 4% off ``mtopnet predict`` on 2
AVX-512 cores (BENCHMARKS.md, 2026-12-04). A chunk is written as every file here is
(:func:`mtopnet_core.jsonio.atomic_path`), so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import blosc, zstd

from mtopnet_core.jsonio import atomic_path

__all__ = ["ChunkedRows", "ChunkDamaged"]

_DTYPES = {"float32": np.dtype("<f4"), "uint8": np.dtype("u1")}
_COMPRESSORS = ("blosc", "zstd", "crc32c")


class ChunkDamaged(ValueError):
    """A stored chunk's bytes do not decode to a chunk (checksum, size or missing file)."""


@dataclass(frozen=True)
class ChunkedRows:
    """A 2-D Zarr v3 array chunked by whole rows, with a codec chain this module decodes.

    Attributes
    ----------
    folder : pathlib.Path
        The array's folder (``.../spectra.zarr/flux``).
    shape : tuple of int
        (rows, channels).
    chunk_rows : int
        Rows per chunk.
    dtype : numpy.dtype
    compressors : tuple of str
        The bytes-to-bytes codecs in the order they were applied when writing.
    fill_value : float
        The value of rows never written (the padding of a last, shorter chunk).
    zstd_level : int
        The Zstandard codec's level, where it is one of ``compressors``.
    zstd_checksum : bool
        Whether the Zstandard frames carry a content checksum.
    """

    folder: Path
    shape: tuple[int, int]
    chunk_rows: int
    dtype: np.dtype
    compressors: tuple[str, ...]
    fill_value: float = 0.0
    zstd_level: int = 0
    zstd_checksum: bool = False

    @classmethod
    def open(cls, folder: Path) -> ChunkedRows | None:
        """Read an array's ``zarr.json``; None if its layout or codecs are not the ones handled here."""
        try:
            meta = json.loads((Path(folder) / "zarr.json").read_text())
            grid, keys = meta["chunk_grid"], meta["chunk_key_encoding"]
            shape = tuple(meta["shape"])
            chunk_shape = tuple(grid["configuration"]["chunk_shape"])
            first, *rest = meta["codecs"]
            fill_value = float(meta.get("fill_value") or 0)  # Zarr writes NaN as "NaN"
        except (OSError, ValueError, KeyError, TypeError):
            return None
        dtype = _DTYPES.get(meta.get("data_type"))
        names = tuple(codec.get("name") for codec in rest)
        zstd_config = next((codec.get("configuration") or {} for codec in rest if codec.get("name") == "zstd"), {})
        plain = (first.get("name") == "bytes"
                 and (first.get("configuration") or {}).get("endian", "little") == "little")
        if (meta.get("zarr_format") != 3 or meta.get("storage_transformers") or dtype is None or not plain
                or len(shape) != 2 or grid.get("name") != "regular" or chunk_shape[1:] != shape[1:]
                or keys.get("name") != "default" or keys.get("configuration", {}).get("separator") != "/"
                or not set(names) <= set(_COMPRESSORS)):
            return None
        return cls(folder=Path(folder), shape=shape, chunk_rows=int(chunk_shape[0]), dtype=dtype, compressors=names,
                   fill_value=fill_value, zstd_level=int(zstd_config.get("level", 0)),
                   zstd_checksum=bool(zstd_config.get("checksum", False)))

    @property
    def writable(self) -> bool:
        """Whether :meth:`write` can encode this array's chunks (Blosc's settings are not kept here)."""
        return "blosc" not in self.compressors

    def write(self, start: int, values: np.ndarray) -> None:
        """Store one whole chunk: rows ``start:start + len(values)``, the array's last chunk
        possibly shorter (the rest of it is then the fill value, as Zarr stores it).

        Raises
        ------
        ValueError
            If the rows are not one whole chunk, their shape or type is not the array's, or the
            chunks' codecs are not :attr:`writable`.
        """
        values = np.asarray(values)
        stop = start + len(values)
        if start % self.chunk_rows or stop != min(start + self.chunk_rows, self.shape[0]):
            raise ValueError(f"{self.folder}: rows {start}-{stop} are not one whole chunk of {self.chunk_rows}")
        if values.shape[1:] != self.shape[1:] or values.dtype != self.dtype:
            raise ValueError(f"{self.folder}: values of shape {values.shape} and type {values.dtype}, "
                             f"not ({len(values)}, {self.shape[1]}) {self.dtype}")
        if not self.writable:
            raise ValueError(f"{self.folder}: its chunks are compressed by Blosc, written through Zarr only")
        if len(values) < self.chunk_rows:
            whole = np.full((self.chunk_rows, self.shape[1]), self.fill_value, self.dtype)
            whole[:len(values)] = values
            values = whole
        data = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
        for name in self.compressors:
            if name == "zstd":
                data = np.frombuffer(zstd.Zstd(self.zstd_level, self.zstd_checksum).encode(data), np.uint8)
            else:  # crc32c
                data = np.concatenate([data, np.frombuffer(np.uint32(google_crc32c.value(data)).tobytes(), np.uint8)])
        folder = self.folder / "c" / str(start // self.chunk_rows)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "0") as temporary:
            data.tofile(temporary)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (clipped to the array), shape (stop - start, channels).

        Raises
        ------
        ChunkDamaged
            If a chunk is missing, fails its checksum or does not decode to a whole chunk.
        """
        start = max(0, start)
        stop = max(start, min(stop, self.shape[0]))
        out = np.empty((stop - start, self.shape[1]), dtype=self.dtype)
        for chunk in range(start // self.chunk_rows, -(-stop // self.chunk_rows)):
            first = chunk * self.chunk_rows
            lo, hi = max(start, first), min(stop, first + self.chunk_rows)
            if hi - lo == self.chunk_rows:  # a whole chunk is copied once, into the output
                self._decode(chunk, out[lo - start:hi - start])
            else:
                out[lo - start:hi - start] = self._decode(chunk)[lo - first:hi - first]
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Picked rows, in the order given, shape (len(rows), channels).

        Rows of an uncompressed array are read where they lie in their chunk's file (a training
        batch reads 64 of 256 rows); compressed chunks are decoded whole, once per call.

        Raises
        ------
        IndexError
            If a row is outside the array.
        ChunkDamaged
            If a chunk is missing, fails its checksum or is shorter than a whole chunk.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"{self.folder}: rows outside 0-{self.shape[0] - 1}")
        out = np.empty((rows.size, self.shape[1]), dtype=self.dtype)
        chunks = rows // self.chunk_rows
        for chunk in np.unique(chunks):
            at = np.flatnonzero(chunks == chunk)
            local = rows[at] - chunk * self.chunk_rows
            if self.compressors:
                out[at] = self._decode(int(chunk))[local]
            else:
                self._read_rows(int(chunk), local, out, at)
        return out

    def _read_rows(self, chunk: int, local: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """Rows ``local`` of an uncompressed chunk into rows ``at`` of ``out``."""
        row_bytes = self.shape[1] * self.dtype.itemsize
        try:
            fd = os.open(self.folder / "c" / str(chunk) / "0", os.O_RDONLY)
        except FileNotFoundError:
            raise ChunkDamaged(f"its file c/{chunk}/0 is missing") from None
        try:
            if os.fstat(fd).st_size != self.chunk_rows * row_bytes:
                raise ChunkDamaged(f"its file c/{chunk}/0 is not {self.chunk_rows * row_bytes} bytes long")
            for row, i in zip(local, at, strict=True):
                if os.preadv(fd, [out[i]], int(row) * row_bytes) != row_bytes:
                    raise ChunkDamaged(f"its file c/{chunk}/0 ended while being read")
        finally:
            os.close(fd)

    def _decode(self, chunk: int, dest: np.ndarray | None = None) -> np.ndarray:
        """One chunk, shape (chunk_rows, channels), copied into ``dest`` where given."""
        path = self.folder / "c" / str(chunk) / "0"
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError:
            raise ChunkDamaged(f"its file c/{chunk}/0 is missing") from None
        if dest is None:
            dest = np.empty((self.chunk_rows, self.shape[1]), dtype=self.dtype)
        raw = dest.reshape(-1).view(np.uint8)
        for name in reversed(self.compressors):
            if name == "crc32c":
                if data.size < 4 or np.uint32(google_crc32c.value(data[:-4])).tobytes() != data[-4:].tobytes():
                    raise ChunkDamaged("its checksum does not match")
                data = data[:-4]
            else:
                data = np.frombuffer(blosc.decompress(data) if name == "blosc" else zstd.decompress(data), np.uint8)
        if data.size != raw.size:
            raise ChunkDamaged(f"it decodes to {data.size} bytes, not {raw.size}")
        raw[:] = data
        return dest
