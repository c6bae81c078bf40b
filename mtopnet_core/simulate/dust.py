"""Calzetti et al. (2000) starburst attenuation curve."""

from __future__ import annotations

import numpy as np

__all__ = ["calzetti_k", "R_V", "attenuation_factor", "transmission"]

R_V: float = 4.05
"""Total-to-selective attenuation of the Calzetti curve."""


def calzetti_k(wavelength: np.ndarray | float) -> np.ndarray:
    """Calzetti et al. (2000) k(lambda) = A(lambda) / E(B-V), eq. (4).

    Parameters
    ----------
    wavelength : float or numpy.ndarray
        Rest-frame wavelength, Angstrom. Below 1200 A and above 2.2 micron the published
        polynomials are extrapolated and k is floored at 0.

    Returns
    -------
    numpy.ndarray
        k(lambda), dimensionless, same shape as ``wavelength``.
    """
    x = np.asarray(wavelength, dtype=np.float64) / 1e4  # micron
    inv = 1.0 / x
    blue = 2.659 * (-2.156 + 1.509 * inv - 0.198 * inv**2 + 0.011 * inv**3) + R_V
    red = 2.659 * (-1.857 + 1.040 * inv) + R_V
    return np.maximum(np.where(x < 0.63, blue, red), 0.0)


def attenuation_factor(wavelength: np.ndarray, ebv: np.ndarray | float) -> np.ndarray:
    """Fraction of light transmitted through Calzetti dust, 10**(-0.4 k(lambda) E(B-V)).

    Parameters
    ----------
    wavelength : numpy.ndarray, shape (L,)
        Rest-frame wavelength, Angstrom.
    ebv : float or numpy.ndarray, shape (N, 1)
        Colour excess E(B-V), mag; broadcast against ``wavelength``.

    Returns
    -------
    numpy.ndarray
        Transmitted fraction, shape of the broadcast.
    """
    return transmission(calzetti_k(wavelength), ebv)


def transmission(k: np.ndarray, ebv: np.ndarray | float) -> np.ndarray:
    """:func:`attenuation_factor` for a curve already evaluated, ``k = calzetti_k(wavelength)``.

    For a fixed wavelength grid evaluated once and reused (the template bank's): the same
    values, bit for bit, without the polynomial per galaxy.

    Parameters
    ----------
    k : numpy.ndarray
        k(lambda), dimensionless.
    ebv : float or numpy.ndarray
        Colour excess E(B-V), mag; broadcast against ``k``.

    Returns
    -------
    numpy.ndarray
        Transmitted fraction, shape of the broadcast.
    """
    return 10.0 ** (-0.4 * np.asarray(k) * np.asarray(ebv))
