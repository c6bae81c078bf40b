"""A FITS file's spectrum table, read by NumPy where its layout is plain, else by astropy.

Reading a 1D spectrum file with astropy's HDU objects costs ~11 ms of a core (header cards,
column objects, verification): twice what the preprocessing and the network then take for it.
Most spectrum files are plain: their first extension is a binary table of fixed-width numbers
without scaling, null values or a heap (ESO Phase 3 spectra, SDSS spec-lite tables, tables of
one pixel per row). Such a table's rows are big-endian records laid end to end (FITS Standard
4.0, section 7.3), which :func:`plain_table` reads in place with NumPy from the headers that
astropy parsed while the file's sizes were checked. Any other layout returns None and is read
by astropy (:func:`astropy_table`), with its full verification.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from astropy.io import fits

__all__ = ["SpectrumTable", "PlainLayout", "plain_layout", "plain_table", "astropy_table", "CACHED_HEADER_CHARS"]

_NUMBER_FORMATS = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
"""TFORM letters of fixed-width numbers, and their NumPy types (FITS Standard, table 18)."""
_TFORM = re.compile(r"(\d*)([A-Z])")
_TRANSFORMS = re.compile(r"(TSCAL|TZERO|TNULL|TDIM)\d+$|THEAP$")
"""Keywords that change how a column's bytes are read: such tables are left to astropy."""


@dataclass(frozen=True)
class SpectrumTable:
    """A binary table's columns.

    Attributes
    ----------
    names : list of str
        Column names (``TTYPEn``), in order.
    units : list of (str or None)
        Their units as written (``TUNITn``).
    columns : list of numpy.ndarray
        Each column's values: the arrays of the single row, or for a table of one pixel per
        row the whole column (shape (rows,)).
    rows : int
    one_pixel_per_row : bool
        True for a table of more than one row whose columns all hold one value per row.
    header : astropy.io.fits.Header
        The table's header.
    """

    names: list[str]
    units: list[str | None]
    columns: list[np.ndarray]
    rows: int
    one_pixel_per_row: bool
    header: fits.Header


@dataclass(frozen=True)
class PlainLayout:
    """How a plain binary table's rows are laid out, from its header alone.

    Attributes
    ----------
    names, units : tuple
        Column names (``TTYPEn``) and units as written (``TUNITn``, None where absent).
    record : numpy.dtype
        One row: the columns as big-endian fields ``c1``, ``c2``...
    rows : int
    """

    names: tuple[str, ...]
    units: tuple[str | None, ...]
    record: np.dtype
    rows: int


def plain_layout(header: fits.Header) -> PlainLayout | None:
    """The layout of a binary table of fixed-width numbers, or None for any other table.

    None when the extension is not a binary table, has a heap, scaled or null-valued columns,
    columns of another type, or column widths that do not add up to its rows (astropy then decides).
    """
    if (header.get("XTENSION") != "BINTABLE" or header.get("BITPIX") != 8 or header.get("NAXIS") != 2
            or header.get("PCOUNT", 0) != 0 or header.get("GCOUNT", 1) != 1
            or any(_TRANSFORMS.match(key) for key in header)):
        return None
    row_bytes, rows, fields = header.get("NAXIS1"), header.get("NAXIS2"), header.get("TFIELDS")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (row_bytes, rows, fields)):
        return None
    names, units, dtype, width = [], [], [], 0
    for i in range(1, fields + 1):
        form, name, unit = header.get(f"TFORM{i}"), header.get(f"TTYPE{i}"), header.get(f"TUNIT{i}")
        parsed = _TFORM.fullmatch(form.strip().upper()) if isinstance(form, str) else None
        if parsed is None or parsed[2] not in _NUMBER_FORMATS or not isinstance(name, str) or not name.strip():
            return None
        repeat = int(parsed[1] or 1)
        width += repeat * np.dtype(_NUMBER_FORMATS[parsed[2]]).itemsize
        if repeat == 0 or width > row_bytes:  # never build a record longer than the row
            return None
        names.append(name)
        units.append((unit.strip() or None) if isinstance(unit, str) else None)
        dtype.append((f"c{i}", _NUMBER_FORMATS[parsed[2]], (repeat,) if repeat > 1 else ()))
    record = np.dtype(dtype)
    if not names or len({n.upper() for n in names}) < len(names) or record.itemsize != row_bytes:
        return None
    return PlainLayout(tuple(names), tuple(units), record, rows)


CACHED_HEADER_CHARS = 10 * 2880
"""Longest header text whose facts are kept for the next file (a Phase 3 table header is two
2880-byte blocks); longer ones, which an upload could make megabytes long, are worked out each time."""


@lru_cache(maxsize=32)
def _layout_of_text(text: str) -> PlainLayout | None:
    return plain_layout(fits.Header.fromstring(text))


def plain_table(header: fits.Header, content: bytes, data_start: int, text: str | None = None) -> SpectrumTable | None:
    """Read a binary table of fixed-width numbers with NumPy, or return None for any other layout.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The extension's header.
    content : bytes
        The whole file.
    data_start : int
        Offset of the extension's data in ``content``, bytes.
    text : str, optional
        The header as the file holds it (``header`` parsed from it). Given (and at most
        :data:`CACHED_HEADER_CHARS` long), the layout is taken from the last tables whose header had
        the same text: a survey's files share their table's header byte for byte, and astropy's
        keyword lookups cost ~0.2 ms a file (BENCHMARKS.md).

    Returns
    -------
    SpectrumTable or None
        None when :func:`plain_layout` declines the table or the file is shorter than its rows.
    """
    layout = _layout_of_text(text) if text is not None and len(text) <= CACHED_HEADER_CHARS else plain_layout(header)
    if layout is None or data_start + layout.record.itemsize * layout.rows > len(content):
        return None
    data = np.frombuffer(content, dtype=layout.record, count=layout.rows, offset=data_start)
    one_pixel_per_row = layout.rows > 1 and all(not layout.record[f].shape for f in layout.record.names)
    if one_pixel_per_row:
        columns = [data[f] for f in layout.record.names]
    else:
        columns = [np.atleast_1d(data[0][f]) for f in layout.record.names] if layout.rows else []
    return SpectrumTable(list(layout.names), list(layout.units), columns, layout.rows, one_pixel_per_row, header)


def astropy_table(table: fits.BinTableHDU) -> SpectrumTable:
    """The same facts from a table astropy has opened (any layout astropy reads)."""
    names = list(table.columns.names)
    rows = len(table.data)
    one_pixel_per_row = rows > 1 and all(np.prod(np.atleast_1d(c.dim or 1)) == 1 and (c.format.repeat or 1) == 1
                                         for c in table.columns)
    if one_pixel_per_row:
        columns = [np.asarray(table.data[name]) for name in names]
    else:
        columns = [np.atleast_1d(np.asarray(table.data[0][name])) for name in names] if rows == 1 else []
    return SpectrumTable(names, [c.unit for c in table.columns], columns, rows, one_pixel_per_row, table.header)
