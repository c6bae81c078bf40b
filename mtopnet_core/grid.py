"""The MOONS low-resolution wavelength grid and the redshift bins.

This module is the single source of truth for both: every data set and every model stores the
grid's fingerprint (:func:`grid_fingerprint`) so that a mismatch is detected on load.

The three spectrograph channels (RI, YJ, H) are observed simultaneously, each on its own ~4k
detector with linear dispersion. The pixel counts and ranges below are chosen (assumed) to
reproduce the paper's 12 217 channels, 0.64-1.8 micron and the 1.35-1.45 micron gap between YJ
and H; the resolving powers follow MOONS descriptions of the low-resolution mode. All
wavelengths are in vacuum, in Angstrom.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "Channel",
    "CHANNELS",
    "N_CHANNELS",
    "wavelength_grid",
    "pixel_widths",
    "pixel_edges",
    "channel_index",
    "channel_slices",
    "contiguous_segments",
    "resolving_power",
    "grid_fingerprint",
    "Z_MIN",
    "Z_BIN_WIDTH",
    "N_Z_BINS",
    "redshift_bin_centres",
    "redshift_bin_edges",
    "redshift_to_bin",
]


@dataclass(frozen=True)
class Channel:
    """One MOONS spectrograph channel with a linear dispersion.

    Attributes
    ----------
    name : str
        Channel name (``"RI"``, ``"YJ"`` or ``"H"``).
    start, stop : float
        Centres of the first and last pixel, Angstrom (vacuum).
    n_pixels : int
        Number of spectral channels (pixels) along the dispersion axis.
    resolving_power : float
        R = lambda / FWHM of the line-spread function (assumed constant in the channel).
    throughput : float
        End-to-end instrument + telescope throughput without the atmosphere (assumed).
    """

    name: str
    start: float
    stop: float
    n_pixels: int
    resolving_power: float
    throughput: float

    @property
    def dispersion(self) -> float:
        """Angstrom per pixel."""
        return (self.stop - self.start) / (self.n_pixels - 1)


CHANNELS: tuple[Channel, ...] = (
    Channel("RI", 6400.0, 9350.0, 4075, 4100.0, 0.20),
    Channel("YJ", 9351.0, 13500.0, 4071, 4300.0, 0.25),
    Channel("H", 14500.0, 18000.0, 4071, 6600.0, 0.25),
)
"""The three channels (RI, YJ, H) of the low-resolution mode. YJ starts about one pixel after
the end of RI so that no wavelength appears twice; the gap is between YJ and H."""

N_CHANNELS: int = sum(c.n_pixels for c in CHANNELS)
"""Number of spectral elements in a MOONS spectrum: 12 217, as in the paper."""


@lru_cache(maxsize=1)
def _grid() -> np.ndarray:
    parts = [np.linspace(c.start, c.stop, c.n_pixels) for c in CHANNELS]
    grid = np.concatenate(parts)
    grid.setflags(write=False)
    return grid


def wavelength_grid() -> np.ndarray:
    """Pixel-centre wavelengths of the MOONS low-resolution grid.

    Returns
    -------
    numpy.ndarray, shape (12217,), float64
        Vacuum wavelengths in Angstrom, strictly increasing, read-only.
    """
    return _grid()


def channel_index() -> np.ndarray:
    """Index of the spectrograph channel (0 = RI, 1 = YJ, 2 = H) of every pixel.

    Returns
    -------
    numpy.ndarray, shape (12217,), int8
    """
    return np.repeat(np.arange(len(CHANNELS), dtype=np.int8), [c.n_pixels for c in CHANNELS])


@lru_cache(maxsize=1)
def channel_slices() -> tuple[slice, ...]:
    """Each spectrograph channel's stretch of the grid, in the order of :data:`CHANNELS`.

    Returns
    -------
    tuple of slice
        One per channel (RI, YJ, H); together they cover the 12 217 pixels.
    """
    stops = np.cumsum([c.n_pixels for c in CHANNELS]).tolist()
    return tuple(slice(start, stop) for start, stop in zip([0, *stops[:-1]], stops, strict=True))


@lru_cache(maxsize=1)
def contiguous_segments() -> tuple[slice, ...]:
    """The grid's stretches without a band gap: RI+YJ (which meet) and H.

    Returns
    -------
    tuple of slice
        Split where neighbouring pixels are over 100 Angstrom apart (the YJ-H gap).
    """
    gap = np.flatnonzero(np.diff(wavelength_grid()) > 100.0)
    edges = [0, *(gap + 1).tolist(), N_CHANNELS]
    return tuple(slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True))


def pixel_widths() -> np.ndarray:
    """Width of every pixel (the channel's dispersion).

    Returns
    -------
    numpy.ndarray, shape (12217,), float64
        Angstrom per pixel.
    """
    return np.repeat([c.dispersion for c in CHANNELS], [c.n_pixels for c in CHANNELS])


def pixel_edges() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper wavelength edges of every pixel.

    Returns
    -------
    lower, upper : numpy.ndarray, shape (12217,), float64
        Angstrom. Pixels of one channel tile it without gaps; channels do not overlap.
    """
    half = 0.5 * pixel_widths()
    return _grid() - half, _grid() + half


def resolving_power() -> np.ndarray:
    """Resolving power R = lambda / FWHM at every pixel.

    Returns
    -------
    numpy.ndarray, shape (12217,), float64
    """
    return np.repeat([c.resolving_power for c in CHANNELS], [c.n_pixels for c in CHANNELS])


def grid_fingerprint(wavelengths: np.ndarray | None = None) -> str:
    """A short hash identifying a wavelength grid, stored with data sets and models.

    Parameters
    ----------
    wavelengths : numpy.ndarray, optional
        Grid to fingerprint, Angstrom; defaults to the MOONS grid.

    Returns
    -------
    str
        First 16 hex digits of the SHA-256 of the grid rounded to 1e-4 Angstrom.
    """
    wave = _grid() if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    rounded = np.round(wave * 1e4).astype(np.int64)
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:16]


# --- Redshift bins (paper, section 3.1): 800 bins of dz = 0.003 from z = 0.7 -----------------

Z_MIN: float = 0.7
"""Lower edge of the first redshift bin."""
Z_BIN_WIDTH: float = 0.003
"""Width of a redshift bin (paper, section 3.1)."""
N_Z_BINS: int = 800
"""Number of redshift bins: they cover 0.7 <= z < 3.1."""


def redshift_bin_edges() -> np.ndarray:
    """Edges of the redshift bins.

    Returns
    -------
    numpy.ndarray, shape (801,), float64
    """
    return Z_MIN + Z_BIN_WIDTH * np.arange(N_Z_BINS + 1)


def redshift_bin_centres() -> np.ndarray:
    """Centres of the redshift bins, used as the support of every redshift PDF.

    Returns
    -------
    numpy.ndarray, shape (800,), float64
    """
    return Z_MIN + Z_BIN_WIDTH * (np.arange(N_Z_BINS) + 0.5)


def redshift_to_bin(z: np.ndarray | float) -> np.ndarray:
    """Index of the bin containing each redshift.

    Parameters
    ----------
    z : float or array_like
        Redshifts.

    Returns
    -------
    numpy.ndarray of int
        Bin indices, same shape as ``z``.

    Raises
    ------
    ValueError
        If a redshift lies outside the binned range [0.7, 3.1).
    """
    z = np.asarray(z, dtype=np.float64)
    index = np.floor((z - Z_MIN) / Z_BIN_WIDTH).astype(np.int64)
    if np.any((index < 0) | (index >= N_Z_BINS)) or np.any(~np.isfinite(z)):
        raise ValueError(
            f"redshift outside the binned range [{Z_MIN}, {Z_MIN + N_Z_BINS * Z_BIN_WIDTH:.1f})"
        )
    return index
