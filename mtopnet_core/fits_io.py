"""1D spectra in and out as FITS: ESO's Phase 3 spectrum layout (which MOONS products follow) in and
out, and SDSS spec-lite files and plain one-pixel-per-row tables in.

The layout: an empty primary HDU with the observation keywords, then one binary table with a
single row whose array columns are ``WAVE``, ``FLUX``, ``ERR`` and ``QUAL``, with units in
``TUNITn`` and data-model roles in ``TUTYPn``/``TUCDn`` (ESO Science Data Products Standard).
Air wavelengths are flagged in that standard by the UCD ``em.wl;obs.atmos``; everything this
project writes is in vacuum.

SDSS spec-lite files hold a table of ``loglam``, ``flux`` (1e-17 erg/s/cm^2/A) and ``ivar``, one
pixel per row, in vacuum; a plain table of WAVE, FLUX and ERR (or IVAR) columns is read the same
way. Sizes are checked before data is read (:data:`MAX_FITS_BYTES`), so a small compressed file
that announces gigabytes is refused without filling the memory.

A plain binary table (fixed-width numbers, no scaling: this project's files, SDSS's) is read by
NumPy from the headers astropy parsed (:mod:`mtopnet_core.fits_tables`, ~4x faster); any other
layout by astropy's HDU objects, with their verification.

Reading validates the layout strictly (a file that is not a 1D spectrum raises
:class:`FitsLayoutError` with one line naming the file and the problem) and lists what a usable
spectrum lacks for M-TOPnet in :attr:`FitsSpectrum.issues` (no error array, air wavelengths,
coverage outside the MOONS grid); :func:`to_moons_grid` then puts it on the MOONS grid.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import threading
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from mtopnet_core import __version__, grid
from mtopnet_core.conventions import FLUX_UNIT, FLUX_UNIT_STRING, MASK_BITS
from mtopnet_core.errors import MtopnetError, UsageError
from mtopnet_core.fits_tables import CACHED_HEADER_CHARS, SpectrumTable, astropy_table, plain_table
from mtopnet_core.spectra import Spectra

__all__ = ["FitsLayoutError", "FitsSpectrum", "write_phase3_spectrum", "read_fits_spectrum", "load_fits_bytes",
           "to_moons_grid", "air_to_vacuum", "export_dataset_fits", "read_fits_batch", "read_fits_rows",
           "MAX_FITS_BYTES"]

logger = logging.getLogger(__name__)

_FLUX_DENSITY = u.erg / (u.s * u.cm**2 * u.AA)
_FITS_FLUX_UNIT = u.Unit(FLUX_UNIT_STRING).to_string("fits")

MAX_FITS_BYTES = 64 * 10**6
"""Largest spectrum file read, before and after gzip decompression (a MOONS 1D spectrum is ~0.3 MB)."""


class FitsLayoutError(MtopnetError, ValueError):
    """A FITS file is not a 1D spectrum in the expected layout."""


@dataclass
class FitsSpectrum:
    """A spectrum read from FITS, on its own wavelength grid.

    Attributes
    ----------
    path : str
        The file's name as given to the reader (a path, or an upload's name).
    object_id : str
        ``OBJECT`` keyword (or the file name).
    wave : numpy.ndarray, shape (L,)
        Wavelengths in Angstrom, converted to vacuum if the file was in air.
    flux : numpy.ndarray, shape (L,)
        1e-17 erg/s/cm^2/A.
    error : numpy.ndarray or None, shape (L,)
        1-sigma error, same unit; None if the file has none.
    qual : numpy.ndarray, shape (L,), int
        Quality flags (0 = good); zeros if the file has none.
    primary_header, table_header : astropy.io.fits.Header
        The primary header and the spectrum table's header.
    issues : list of str
        What the spectrum lacks for M-TOPnet, one short sentence each.
    """

    path: str
    object_id: str
    wave: np.ndarray
    flux: np.ndarray
    error: np.ndarray | None
    qual: np.ndarray
    primary_header: fits.Header
    table_header: fits.Header
    issues: list[str] = field(default_factory=list)

    @cached_property
    def header(self) -> fits.Header:
        """The primary header merged with the table header's general keywords (made on first
        use: merging takes ~1.7 ms, as long as reading the rest of a file)."""
        header = self.primary_header.copy()
        header.extend(self.table_header, unique=True)
        return header

    def keyword(self, key: str, default: object = None) -> object:
        """A keyword's value, from the primary header, else the table header (as in :attr:`header`)."""
        return _keyword((self.primary_header, self.table_header), key, default)


def _keyword(headers: Sequence[fits.Header], key: str, default: object = None) -> object:
    """``key``'s value in the first of ``headers`` that has it (``default`` if none has)."""
    for header in headers:
        if key in header:
            return header[key]
    return default


def air_to_vacuum(wave_air: np.ndarray) -> np.ndarray:
    """Convert air wavelengths to vacuum (Morton 2000 / Ciddor 1996 refractive index).

    Parameters
    ----------
    wave_air : numpy.ndarray
        Air wavelengths, Angstrom (valid above 2000 A).

    Returns
    -------
    numpy.ndarray
        Vacuum wavelengths, Angstrom.
    """
    wave_air = np.asarray(wave_air, dtype=np.float64)
    s2 = (1e4 / wave_air) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) \
        + 1.599740894897e-4 / (38.92568793293 - s2)
    return wave_air * n


def write_phase3_spectrum(path: str | os.PathLike, flux: np.ndarray, error: np.ndarray,
                          qual: np.ndarray, object_id: str, wave: np.ndarray | None = None,
                          exptime_s: float | None = None, extra: dict | None = None,
                          overwrite: bool = False) -> Path:
    """Write one spectrum as an ESO Phase 3 1D-spectrum FITS file.

    Parameters
    ----------
    path : str or path-like
        Output file.
    flux, error : numpy.ndarray, shape (L,)
        Flux and 1-sigma error, 1e-17 erg/s/cm^2/A.
    qual : numpy.ndarray, shape (L,)
        Quality flags, 0 = good (:data:`~mtopnet_core.conventions.MASK_BITS`).
    object_id : str
        Written as ``OBJECT``.
    wave : numpy.ndarray, shape (L,), optional
        Vacuum wavelengths, Angstrom; defaults to the MOONS grid.
    exptime_s : float, optional
        Exposure time, s.
    extra : dict, optional
        More primary-header keywords (keys up to 8 characters, or HIERARCH).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
    """
    wave = np.asarray(grid.wavelength_grid() if wave is None else wave, dtype=np.float64)
    n = wave.size
    if not (len(flux) == len(error) == len(qual) == n):
        raise ValueError(f"{path}: wave, flux, error and qual must have the same length")
    primary = fits.PrimaryHDU()
    hdr = primary.header
    hdr["ORIGIN"] = ("M-TOPnet", "software that wrote the file")
    hdr["TELESCOP"] = ("ESO-VLT-U1", "MOONS is mounted on UT1")
    hdr["INSTRUME"] = ("MOONS", "instrument")
    hdr["OBJECT"] = (str(object_id), "object identifier")
    hdr["PRODCATG"] = ("SCIENCE.SPECTRUM", "data product category")
    hdr["PROCSOFT"] = (f"mtopnet/{__version__}", "software version")
    hdr["SPECSYS"] = ("TOPOCENT", "reference frame of the spectral coordinates")
    hdr["WAVELMIN"] = (wave.min() / 10.0, "[nm] minimum wavelength")
    hdr["WAVELMAX"] = (wave.max() / 10.0, "[nm] maximum wavelength")
    hdr["FLUXCAL"] = ("ABSOLUTE", "flux calibration")
    hdr["FLUXERR"] = (-2, "uncertainty of the flux scale is unknown")
    if exptime_s is not None:
        hdr["EXPTIME"] = (float(exptime_s), "[s] total integration time")
    for key, value in (extra or {}).items():
        hdr[key] = value
    columns = [fits.Column("WAVE", format=f"{n}D", unit="angstrom"),
               fits.Column("FLUX", format=f"{n}E", unit=_FITS_FLUX_UNIT),
               fits.Column("ERR", format=f"{n}E", unit=_FITS_FLUX_UNIT),
               fits.Column("QUAL", format=f"{n}J")]
    table = fits.BinTableHDU.from_columns(columns, nrows=1, name="SPECTRUM")  # its header; the row is written below
    th = table.header
    th["VOCLASS"] = ("SPECTRUM V2.0", "VO data model")
    th["VOPUB"] = ("ESO/SAF", "VO publishing authority")
    th["NELEM"] = (n, "length of the data arrays")
    roles = {
        "WAVE": ("spec:Data.SpectralAxis.Value", "em.wl"),
        "FLUX": ("spec:Data.FluxAxis.Value", "phot.flux.density;em.wl"),
        "ERR": ("spec:Data.FluxAxis.Accuracy.StatError", "stat.error;phot.flux.density;em.wl"),
        "QUAL": ("spec:Data.FluxAxis.Accuracy.QualityStatus", "meta.code.qual"),
    }
    for i, name in enumerate(table.columns.names, start=1):
        th[f"TUTYP{i}"], th[f"TUCD{i}"] = roles[name]
    # the row as FITS stores it, big-endian: astropy's writer swaps a little-endian row's bytes one
    # array element at a time in Python (~80 ms of a file's ~100 ms)
    row = np.zeros((), np.dtype([("WAVE", ">f8", (n,)), ("FLUX", ">f4", (n,)), ("ERR", ">f4", (n,)),
                                 ("QUAL", ">i4", (n,))]))
    row["WAVE"], row["FLUX"], row["ERR"], row["QUAL"] = wave, flux, error, qual
    data = row.tobytes()
    path = Path(path)
    try:
        stream = open(path, "wb" if overwrite else "xb")
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists (overwrite replaces it)") from None
    with stream:
        stream.write((primary.header.tostring() + th.tostring()).encode("ascii"))
        stream.write(data + bytes(-len(data) % 2880))  # data blocks are zero-padded to 2880 bytes
    return path


_READING = threading.Lock()
"""One file read at a time: astropy's warnings are made errors by ``warnings.catch_warnings``,
which changes the filters of the whole process (threads of one prediction, or of the app's
sessions, would undo each other's). Reading holds the GIL anyway."""


def _column(table: SpectrumTable, *names: str) -> tuple[int, str] | None:
    upper = [c.upper() for c in table.names]
    for name in names:
        if name in upper:
            return upper.index(name), table.names[upper.index(name)]
    return None


@lru_cache(maxsize=64)
def _parse_unit(text: str | None) -> u.UnitBase | None:
    """A unit from a TUNIT string in FITS, VOUnit or astropy's generic syntax (None if unknown).

    Cached: a survey's files share a few unit strings, and astropy's parser takes ~1 ms per call."""
    if not text:
        return None
    for syntax in ("fits", "generic"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", u.UnitsWarning)
                return u.Unit(text, format=syntax, parse_strict="raise")
        except ValueError:
            continue
    return None


@lru_cache(maxsize=64)
def _flux_scale(unit_text: str | None) -> float | None:
    """Factor taking the file's flux unit to 1e-17 erg/s/cm^2/A (None if not a flux density)."""
    unit = _parse_unit(unit_text)
    try:
        return None if unit is None else float((1.0 * unit).to_value(FLUX_UNIT * _FLUX_DENSITY))
    except u.UnitsError:
        return None


def load_fits_bytes(source: str | os.PathLike | bytes, name: str | None = None,
                    max_bytes: int = MAX_FITS_BYTES) -> tuple[str, bytes]:
    """The bytes of a FITS file (gzip decompressed), refused before they can exceed ``max_bytes``.

    Parameters
    ----------
    source : path-like or bytes
        A file, or its content (an upload).
    name : str, optional
        How messages name the file (default: the path); an upload's name, never a server path.
    max_bytes : int
        Largest file, and largest decompressed content, accepted.

    Returns
    -------
    name : str
    content : bytes
        The FITS file, decompressed.

    Raises
    ------
    FileNotFoundError
        If a path is not a file.
    FitsLayoutError
        If the file, or what it decompresses to, is over ``max_bytes``, or its gzip stream is broken.
    """
    limit = f"the {max_bytes / 1e6:.0f} MB limit for one spectrum file"
    if isinstance(source, bytes | bytearray):
        name, content = name or "upload", bytes(source)
    else:
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such file")
        if path.stat().st_size > max_bytes:
            raise FitsLayoutError(f"{name}: {path.stat().st_size / 1e6:.1f} MB is over {limit}")
        content = path.read_bytes()
    if len(content) > max_bytes:
        raise FitsLayoutError(f"{name}: {len(content) / 1e6:.1f} MB is over {limit}")
    if content[:2] == b"\x1f\x8b":
        # read at most one byte past the limit: a small file that inflates to gigabytes stops here
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(content)) as stream:
                content = stream.read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise FitsLayoutError(f"{name}: broken gzip file ({exc})") from None
        if len(content) > max_bytes:
            raise FitsLayoutError(f"{name}: decompresses to more than {limit}")
    return name, content


def _declared_data_bytes(header: fits.Header) -> int:
    """Bytes of data an HDU's header announces (FITS standard, section 4.4.1)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    elements = 1
    for axis in range(1, naxis + 1):
        elements *= int(header.get(f"NAXIS{axis}", 0))
    if header.get("XTENSION", "").strip() == "BINTABLE" or header.get("GROUPS"):
        elements += int(header.get("PCOUNT", 0))
    return abs(int(header.get("BITPIX", 8))) // 8 * int(header.get("GCOUNT", 1)) * elements


@lru_cache(maxsize=32)
def _extension_data_bytes(text: str) -> int:
    """:func:`_declared_data_bytes` of an extension's header text: a survey's files share their
    table's header byte for byte, whose keyword lookups cost ~0.08 ms a file."""
    return _declared_data_bytes(fits.Header.fromstring(text))


def _walk_hdus(content: bytes, name: str) -> list[tuple[fits.Header, int, str]]:
    """Each HDU's header, the offset of its data and the header's text, walking the file's headers
    (2880-byte blocks, up to each END card); a file whose headers announce more data than it holds
    is refused here, before astropy or anything else reads data."""
    block, position, declared, hdus = 2880, 0, 0, []
    while position < len(content):
        end = position
        while True:
            chunk = content[end:end + block]
            if len(chunk) < block:
                if position == 0:
                    raise FitsLayoutError(f"{name}: not a FITS file (no complete header)")
                return hdus  # trailing bytes after the last HDU: astropy decides
            end += block
            cards = [chunk[i:i + 80] for i in range(0, block, 80)]
            if any(card.startswith(b"END") and not card[3:].strip() for card in cards):
                break
        text = content[position:end].decode("ascii", errors="replace")
        try:
            header = fits.Header.fromstring(text)
            kept = 0 < position and len(text) <= CACHED_HEADER_CHARS  # an extension: the same in a survey's files
            size = _extension_data_bytes(text) if kept else _declared_data_bytes(header)
        except (ValueError, TypeError) as exc:
            raise FitsLayoutError(f"{name}: unreadable FITS header ({exc})") from None
        hdus.append((header, end, text))
        declared += size
        position = end + -(-size // block) * block
        if position > len(content):
            raise FitsLayoutError(f"{name}: the file is truncated or damaged: its headers announce "
                                  f"{_size(declared)} of data and it holds {_size(len(content))}")
    return hdus


def _read_table(table: SpectrumTable, name: str) -> dict:
    """The spectrum's arrays and column facts from a table in either layout."""
    if not table.one_pixel_per_row and table.rows != 1:
        raise FitsLayoutError(f"{name}: spectrum table has {table.rows} rows but array columns; "
                              "readable layouts: ESO Phase 3 (one row of arrays WAVE, FLUX, ERR, QUAL), "
                              "SDSS spec-lite (loglam, flux, ivar) or one pixel per row (WAVE, FLUX, ERR or IVAR)")
    wave_col = _column(table, "WAVE", "WAVELENGTH", "LAMBDA", "LOGLAM")
    flux_col = _column(table, "FLUX")
    if wave_col is None or flux_col is None:
        raise FitsLayoutError(f"{name}: spectrum table lacks a WAVE (or LOGLAM) or FLUX column "
                              f"(has {', '.join(table.names)})")
    err_col = _column(table, "ERR", "ERROR", "SIGMA")
    ivar_col = None if err_col is not None else _column(table, "IVAR")
    qual_col = _column(table, "QUAL", "QUALITY", "AND_MASK", "MASK")

    def values(column) -> np.ndarray:
        return np.asarray(table.columns[column[0]], dtype=np.float64)

    wave = values(wave_col)
    if wave_col[1].upper() == "LOGLAM":
        wave = 10.0 ** wave
    flux = values(flux_col)
    qual = np.zeros(wave.size, np.int64) if qual_col is None else values(qual_col).astype(np.int64)
    error = None if err_col is None else values(err_col)
    if ivar_col is not None:
        ivar = values(ivar_col)
        with np.errstate(divide="ignore", invalid="ignore"):
            error = np.where(ivar > 0, 1.0 / np.sqrt(ivar), np.inf)
        if qual.size == ivar.size:
            qual = np.where(ivar > 0, qual, qual | MASK_BITS["bad_value"])
    return {"wave": wave, "flux": flux, "error": error, "qual": qual,
            "wave_unit": None if wave_col[1].upper() == "LOGLAM" else table.units[wave_col[0]],
            "wave_ucd": str(table.header.get(f"TUCD{wave_col[0] + 1}", "")),
            "flux_unit": table.units[flux_col[0]],
            # SDSS spectra state their unit in the data model, not in TUNIT: 1e-17 erg/s/cm2/A, vacuum
            "sdss": wave_col[1].upper() == "LOGLAM"}


def _size(n_bytes: int) -> str:
    """A file size as people read it."""
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes:,} bytes"


def _plain_reason(exc: BaseException) -> str:
    """astropy's reason in one line for an astronomer: its indexing notes and repair hints left out."""
    text = re.sub(r"\s*\(note: Astropy uses zero-based indexing\)\.?", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("There may be", "Error validating header"))]
    reason = "; ".join(kept or lines[:1]).rstrip(".")
    if "multiple of 2880" in reason or "truncated" in reason.lower():
        return "the file is truncated or damaged: " + reason[:1].lower() + reason[1:]
    return reason[:200]


def read_fits_spectrum(source: str | os.PathLike | bytes, name: str | None = None,
                       max_bytes: int = MAX_FITS_BYTES) -> FitsSpectrum:
    """Read and validate a 1D spectrum: ESO Phase 3, SDSS spec-lite, or a table of one pixel per row.

    Sizes are checked before any data is read: the file (or upload) and what it decompresses to
    must be under ``max_bytes``, and its headers may not announce more data than it holds.

    Parameters
    ----------
    source : path-like or bytes
        A file, or an upload's content (read in memory, never written to disk).
    name : str, optional
        How messages and the object ID fall-back name the file (default: the path).
    max_bytes : int

    Returns
    -------
    FitsSpectrum
        With :attr:`FitsSpectrum.issues` listing what it lacks for M-TOPnet.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FitsLayoutError
        If the file is too large, not FITS, has no spectrum table in a known layout, or its
        wavelengths are not finite and increasing.
    """
    with _READING:
        return _read_spectrum(source, name, max_bytes)


def _read_spectrum(source: str | os.PathLike | bytes, name: str | None, max_bytes: int) -> FitsSpectrum:
    name, content = load_fits_bytes(source, name, max_bytes)
    try:
        # astropy's warnings about a damaged file are errors here
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            warnings.simplefilter("error", AstropyUserWarning)
            layout = _walk_hdus(content, name)
            table = plain_table(layout[1][0], content, layout[1][1], text=layout[1][2]) if len(layout) > 1 else None
            if table is not None:
                facts, primary = _read_table(table, name), layout[0][0]
            else:
                with fits.open(io.BytesIO(content), memmap=False) as hdus:
                    hdus.verify("exception")
                    tables = [h for h in hdus if isinstance(h, fits.BinTableHDU)]
                    if not tables:
                        raise FitsLayoutError(f"{name}: no binary-table extension; not a 1D spectrum file")
                    table, primary = astropy_table(tables[0]), hdus[0].header
                    facts = _read_table(table, name)
    except FitsLayoutError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, fits.VerifyError, fits.verify.VerifyWarning,
            AstropyUserWarning) as exc:
        raise FitsLayoutError(f"{name}: not a readable FITS spectrum ({_plain_reason(exc)})") from None
    wave, flux, error, qual = facts["wave"], facts["flux"], facts["error"], facts["qual"]

    if wave.size < 2 or flux.size != wave.size:
        raise FitsLayoutError(f"{name}: WAVE has {wave.size} elements and FLUX {flux.size}; "
                              "they must be equal arrays")
    if error is not None and error.size != wave.size:
        raise FitsLayoutError(f"{name}: ERR has {error.size} elements, WAVE {wave.size}")
    if qual.size != wave.size:
        raise FitsLayoutError(f"{name}: QUAL has {qual.size} elements, WAVE {wave.size}")
    issues: list[str] = []
    try:
        wave = (wave * (_parse_unit(facts["wave_unit"]) or u.AA)).to_value(u.AA)
    except u.UnitsError:
        raise FitsLayoutError(f"{name}: WAVE unit {facts['wave_unit']!r} is not a wavelength unit") from None
    if not np.all(np.isfinite(wave)) or np.any(np.diff(wave) <= 0):
        raise FitsLayoutError(f"{name}: wavelengths are not finite and strictly increasing")

    headers = (primary, table.header)
    if "obs.atmos" in facts["wave_ucd"] or str(_keyword(headers, "AIRORVAC", "")).lower().startswith("air"):
        wave = air_to_vacuum(wave)
        issues.append("air wavelengths (converted to vacuum)")
    scale = 1.0 if facts["sdss"] and not facts["flux_unit"] else _flux_scale(facts["flux_unit"])
    if scale is None:
        issues.append(f"flux unit {facts['flux_unit']!r} not recognised (assumed 1e-17 erg/s/cm2/A)")
        scale = 1.0
    flux = flux * scale
    if error is None:
        issues.append("no error array")
    else:
        error = error * scale
    moons = grid.wavelength_grid()
    covered = (moons >= wave[0]) & (moons <= wave[-1])
    if not covered.all():
        issues.append(f"covers {wave[0] / 1e4:.3f}-{wave[-1] / 1e4:.3f} micron: "
                      f"{100 * (1 - covered.mean()):.0f}% of the MOONS grid (0.64-1.80 micron) is missing")
    stem = Path(name).name
    for suffix in (".gz", ".fits", ".fit"):
        stem = stem.removesuffix(suffix)
    object_id = str(_keyword(headers, "OBJECT", "")).strip() or stem
    return FitsSpectrum(name, object_id, wave, flux, error, qual, *headers, issues)


def to_moons_grid(spectrum: FitsSpectrum) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put a spectrum read from FITS on the MOONS grid.

    A spectrum already on the grid is passed through; another is linearly interpolated
    (errors too, ignoring the correlations interpolation introduces), and channels it does not
    cover are flagged ``no_coverage`` with zero flux and infinite error. Non-finite values are
    flagged ``bad_value``. A missing error array is left as NaN for the caller to handle.

    Returns
    -------
    flux, error : numpy.ndarray, shape (12217,), float32
        1e-17 erg/s/cm^2/A.
    mask : numpy.ndarray, shape (12217,), uint8
    """
    moons = np.asarray(grid.wavelength_grid())
    error_in = np.full(spectrum.wave.size, np.nan) if spectrum.error is None else spectrum.error
    if spectrum.wave.size == moons.size and np.allclose(spectrum.wave, moons, rtol=0, atol=1e-3):
        flux, error = spectrum.flux.copy(), error_in.copy()
        # QUAL values beyond our 8 mask bits stay flags, never wrap to 0
        qual = spectrum.qual
        mask = np.where((qual >= 0) & (qual <= 255), qual, MASK_BITS["flagged_input"]).astype(np.uint8)
    else:
        flux = np.interp(moons, spectrum.wave, spectrum.flux, left=0.0, right=0.0)
        error = np.interp(moons, spectrum.wave, error_in, left=np.inf, right=np.inf)
        mask = np.zeros(moons.size, dtype=np.uint8)
        outside = (moons < spectrum.wave[0]) | (moons > spectrum.wave[-1])
        mask[outside] |= MASK_BITS["no_coverage"]
        # a channel interpolated from a flagged pixel (either neighbour) stays flagged
        right = np.clip(np.searchsorted(spectrum.wave, moons), 0, spectrum.wave.size - 1)
        left = np.clip(right - 1, 0, spectrum.wave.size - 1)
        flagged = (spectrum.qual[left] != 0) | (spectrum.qual[right] != 0)
        mask[flagged & ~outside] |= MASK_BITS["flagged_input"]
    bad = ~np.isfinite(flux)
    if spectrum.error is not None:
        bad |= np.isnan(error)
    mask[bad & ((mask & MASK_BITS["no_coverage"]) == 0)] |= MASK_BITS["bad_value"]
    return flux.astype(np.float32), error.astype(np.float32), mask


def export_dataset_fits(data: str | os.PathLike, out: str | os.PathLike,
                        ids: Iterable[str] | None = None, first: int | None = None,
                        overwrite: bool = False) -> list[Path]:
    """Write spectra of a data set as Phase 3 FITS files, one per object (``OBJECT_ID.fits``).

    Truth values of mock spectra go into ``HIERARCH MTOPNET TRUE ...`` keywords.

    Parameters
    ----------
    data : str or path-like
        Data set folder.
    out : str or path-like
        Output folder (created).
    ids : iterable of str, optional
        Object IDs to export.
    first : int, optional
        Export the first ``first`` spectra (when ``ids`` is not given; default 10).
    overwrite : bool
        Replace existing files.

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    ValueError
        If an object ID is not in the data set.
    """
    from mtopnet_core.store import open_dataset

    dataset = open_dataset(data)
    catalogue = dataset.catalogue
    if ids:
        ids = list(ids)
        position = {oid: i for i, oid in enumerate(catalogue["object_id"])}
        unknown = [oid for oid in ids if oid not in position]
        if unknown:
            raise UsageError(f"{data}: object IDs not in the data set: {', '.join(unknown[:5])}")
        rows = np.array([position[oid] for oid in ids])
    else:
        rows = np.arange(min(first or 10, len(catalogue)))
    arrays = dataset.read(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    truth_columns = ["z", "log_mstar", "log_sfr", "m_h", "flux_halpha"]
    for k, row in enumerate(rows):
        record = catalogue.iloc[row]
        extra = {f"HIERARCH MTOPNET TRUE {c.upper()}": float(record[c])
                 for c in truth_columns if c in catalogue.columns}
        written.append(write_phase3_spectrum(
            out / f"{record['object_id']}.fits", arrays["flux"][k], arrays["error"][k],
            arrays["mask"][k], str(record["object_id"]),
            exptime_s=float(record["t_exp_h"]) * 3600 if "t_exp_h" in catalogue.columns else None,
            extra=extra, overwrite=overwrite))
    return written


def read_fits_batch(sources: Iterable[str | os.PathLike | tuple[str, bytes]], sky: np.ndarray,
                    max_bytes: int | None = None) -> tuple[Spectra, list[str | None]]:
    """Read FITS spectra and put them on the MOONS grid.

    A file that cannot be used (unreadable, too large, not a 1D spectrum, no error array) gets a
    problem message naming it, and zero flux with every channel masked, so it is rejected
    downstream.

    Parameters
    ----------
    sources : iterable of path-like, or of (name, content) pairs
        Files, or uploads read in memory (messages then name them by ``name`` only).
    sky : numpy.ndarray, shape (12217,)
        Sky model of the observations, photons/s/cm^2/A/arcsec^2.
    max_bytes : int, optional
        Largest file, before and after decompression (:func:`load_fits_bytes`; default
        :data:`MAX_FITS_BYTES`).

    Returns
    -------
    spectra : Spectra
        Named by their object IDs (header OBJECT, else the file name).
    problems : list of (str or None)
        Why each file could not be read, or None.
    """
    max_bytes = MAX_FITS_BYTES if max_bytes is None else max_bytes
    names, fluxes, errors, masks, problems = [], [], [], [], []
    for source in sources:
        label, content = (source if isinstance(source, tuple) else (str(source), source))
        problem, name = None, Path(label).name
        flux = error = np.zeros(grid.N_CHANNELS, np.float32)
        mask = np.full(grid.N_CHANNELS, 255, np.uint8)
        try:
            spectrum = read_fits_spectrum(content, name=label, max_bytes=max_bytes)
            name = spectrum.object_id
            if spectrum.error is None:
                problem = f"{label}: no error array (ERR or IVAR column); M-TOPnet needs it to mask bad channels"
            else:
                flux, error, mask = to_moons_grid(spectrum)
        except (OSError, ValueError) as exc:
            problem = str(exc)
        names.append(name)
        fluxes.append(flux)
        errors.append(error)
        masks.append(mask)
        problems.append(problem)
    shape = (len(names), grid.N_CHANNELS)
    spectra = Spectra(flux=np.reshape(fluxes, shape), sky=sky, error=np.reshape(errors, shape),
                      mask=np.reshape(masks, shape), names=names)
    return spectra, problems


def read_fits_rows(start: int, stop: int, paths: Sequence[str | os.PathLike],
                   sky: np.ndarray) -> tuple[Spectra, list[str | None]]:
    """:func:`read_fits_batch` of files ``start:stop`` of a job (``paths`` are those files): the
    unit of work of the reader processes of :func:`mtopnet_core.batch.predict_fits`, which hand
    back the rows with the result. Here, not in the batch module, so that a reader imports
    astropy and not the predictor (~1 s less per process)."""
    if len(paths) != stop - start:
        raise ValueError(f"rows {start}:{stop} but {len(paths)} files")
    return read_fits_batch(paths, sky)
