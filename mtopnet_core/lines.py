"""Spectral line list of the paper's Table 1 (rest-frame, vacuum, Angstrom).

This is the single source of truth for the line-location labels and for the app's line markers.
Values are exactly as printed in Table 1 of Ginolfi et al. (M-TOPnet); a row with several
wavelengths (doublets, multiplets) becomes one :class:`Line` per wavelength.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Line", "TABLE1_LINES", "line_wavelengths", "lines_in_range"]


@dataclass(frozen=True)
class Line:
    """One spectral line.

    Attributes
    ----------
    name : str
        Label as printed in the paper's Table 1.
    wavelength : float
        Rest-frame vacuum wavelength, Angstrom.
    """

    name: str
    wavelength: float


_TABLE1: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("Ly α", (1215.2,)),
    ("N V", (1240.8,)),
    ("Si II", (1260.4,)),
    ("O I", (1305.5,)),
    ("C II", (1335.3,)),
    ("Si IV", (1393.8, 1402.8)),
    ("Si II", (1526.7,)),
    ("C IV", (1549.5,)),
    ("He II", (1640.4,)),
    ("[O III]", (1660.8, 1666.2)),
    ("C III]", (1908.7,)),
    ("[O II]", (3727.1, 3729.9)),
    ("Ca II H&K", (3933.7, 3968.5)),
    ("CN", (3875.0,)),
    ("H β", (4862.7,)),
    ("[O III]", (4960.3, 5008.2)),
    ("Fe I", (4669.3,)),
    ("Mg I", (5167.0, 5172.0, 5183.0)),
    ("Fe I", (5270.0,)),
    ("Na I D", (5892.0,)),
    ("TiO", (6180.0,)),
    ("[N II]", (6549.9,)),
    ("H α", (6564.6,)),
    ("[N II]", (6585.3,)),
    ("[S II]", (6718.3, 6732.7)),
    ("TiO", (7150.0,)),
    ("Na I", (8183.0, 8195.0)),
    ("Ca II", (8489.0, 8542.0, 8662.0)),
    ("[S III]", (9070.0, 9532.0)),
    ("He I", (10830.3,)),
)

TABLE1_LINES: tuple[Line, ...] = tuple(
    Line(name, wavelength) for name, wavelengths in _TABLE1 for wavelength in wavelengths
)
"""Every line of Table 1, in the table's order (42 wavelengths)."""


def line_wavelengths() -> np.ndarray:
    """Rest-frame vacuum wavelengths of all Table 1 lines.

    Returns
    -------
    numpy.ndarray, shape (42,), float64
        Angstrom, in the table's order.
    """
    return np.array([line.wavelength for line in TABLE1_LINES])


def lines_in_range(z: float, lambda_min: float, lambda_max: float) -> list[tuple[Line, float]]:
    """Table 1 lines whose observed wavelength at redshift ``z`` lies in a range.

    Parameters
    ----------
    z : float
        Redshift.
    lambda_min, lambda_max : float
        Observed-frame range, Angstrom (vacuum).

    Returns
    -------
    list of (Line, float)
        Each line with its observed wavelength in Angstrom.
    """
    found = []
    for line in TABLE1_LINES:
        observed = line.wavelength * (1.0 + z)
        if lambda_min <= observed <= lambda_max:
            found.append((line, observed))
    return found
