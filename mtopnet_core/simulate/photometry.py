"""Synthetic AB photometry in an idealised H band.

The H filter is a trapezoid (assumed, close to the MKO H half-power points 1.49-1.78 micron)
that lies wholly inside the MOONS H channel, so ``m_H`` can be measured on a simulated
spectrum as well as on a rest-frame template.
"""

from __future__ import annotations

import numpy as np

from mtopnet_core.conventions import SPEED_OF_LIGHT_KMS

__all__ = ["H_FILTER_WAVELENGTH", "H_FILTER_THROUGHPUT", "H_AB_DENOMINATOR", "h_filter", "ab_magnitude", "C_ANGSTROM"]

C_ANGSTROM: float = SPEED_OF_LIGHT_KMS * 1e13
"""Speed of light, Angstrom/s."""

H_FILTER_WAVELENGTH = np.array([14800.0, 15200.0, 17600.0, 17990.0])
"""Corners of the trapezoidal H filter, Angstrom (vacuum)."""
H_FILTER_THROUGHPUT = np.array([0.0, 1.0, 1.0, 0.0])
"""Throughput at the corners (photon-counting response)."""


def h_filter(wavelength: np.ndarray) -> np.ndarray:
    """Throughput of the H filter at ``wavelength`` (Angstrom), zero outside it."""
    return np.interp(wavelength, H_FILTER_WAVELENGTH, H_FILTER_THROUGHPUT, left=0.0, right=0.0)


def _ab_denominator() -> float:
    # integral of T(lambda) c / lambda dlambda on a fine grid; the filter is fixed.
    wave = np.linspace(H_FILTER_WAVELENGTH[0], H_FILTER_WAVELENGTH[-1], 20001)
    return float(np.trapezoid(h_filter(wave) * C_ANGSTROM / wave, wave))


H_AB_DENOMINATOR = _ab_denominator()


def ab_magnitude(wavelength: np.ndarray, f_lambda: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """AB magnitude in the H filter of spectra sampled on pixels.

    Photon-counting definition: m = -2.5 log10( int F_lambda T lambda dlambda /
    int T c/lambda dlambda ) - 48.6.

    Parameters
    ----------
    wavelength : numpy.ndarray, shape (L,) or (N, L)
        Pixel-centre wavelengths, Angstrom.
    f_lambda : numpy.ndarray, shape (L,) or (N, L)
        Flux density, erg/s/cm^2/A (mean over each pixel).
    widths : numpy.ndarray, shape (L,) or (N, L)
        Pixel widths, Angstrom.

    Returns
    -------
    numpy.ndarray
        AB magnitudes, shape (N,) (or a scalar array for one spectrum); ``inf`` for zero flux.
    """
    numerator = np.sum(f_lambda * h_filter(wavelength) * wavelength * widths, axis=-1)
    with np.errstate(divide="ignore"):
        return -2.5 * np.log10(numerator / H_AB_DENOMINATOR) - 48.6
