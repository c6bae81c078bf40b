"""Fibre losses: the fraction of a Sersic galaxy's light that enters a round fibre in seeing."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import gammainc, gammaincinv
from scipy.stats import ncx2

__all__ = ["fibre_fraction"]

_LOG_RE_GRID = np.linspace(np.log10(0.005), np.log10(10.0), 121)  # arcsec


def _point_source_fraction(r: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """Fraction of a Gaussian PSF centred at distance ``r`` that falls inside a circle.

    |offset + noise|^2 / sigma^2 is non-central chi-square with 2 degrees of freedom.
    """
    return ncx2.cdf((radius / sigma) ** 2, 2, (r / sigma) ** 2)


@lru_cache(maxsize=16)
def _table(sersic_n: float, diameter: float, seeing_fwhm: float) -> np.ndarray:
    b_n = gammaincinv(2 * sersic_n, 0.5)  # half the light inside r_e
    sigma = seeing_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    x = np.geomspace(1e-5, 100.0, 4000)  # radius in units of r_e
    enclosed = gammainc(2 * sersic_n, b_n * x ** (1.0 / sersic_n))
    shell_light = np.diff(enclosed, prepend=0.0)
    fractions = []
    for log_re in _LOG_RE_GRID:
        r = x * 10.0**log_re
        fractions.append(np.sum(shell_light * _point_source_fraction(r, diameter / 2, sigma)))
    return np.array(fractions)


def fibre_fraction(
    r_eff_arcsec: np.ndarray,
    sersic_n: np.ndarray,
    diameter_arcsec: float = 1.2,
    seeing_fwhm_arcsec: float = 0.8,
) -> np.ndarray:
    """Fraction of the total light of a centred Sersic galaxy that enters the fibre.

    The profile is convolved with a Gaussian seeing disc; the result is tabulated once per
    Sersic index on a grid of effective radii and interpolated in log r_e.

    Parameters
    ----------
    r_eff_arcsec : numpy.ndarray, shape (N,)
        Half-light radius, arcsec (0.005-10).
    sersic_n : numpy.ndarray, shape (N,)
        Sersic index of each galaxy (any value; the table is made per distinct value).
    diameter_arcsec : float
        Fibre diameter on the sky, arcsec.
    seeing_fwhm_arcsec : float
        FWHM of the Gaussian seeing, arcsec.

    Returns
    -------
    numpy.ndarray, shape (N,)
        Fraction in [0, 1].
    """
    r_eff = np.atleast_1d(np.asarray(r_eff_arcsec, dtype=np.float64))
    n = np.broadcast_to(np.asarray(sersic_n, dtype=np.float64), r_eff.shape)
    log_re = np.log10(np.clip(r_eff, 10 ** _LOG_RE_GRID[0], 10 ** _LOG_RE_GRID[-1]))
    out = np.empty_like(r_eff)
    for value in np.unique(n):
        table = _table(float(value), float(diameter_arcsec), float(seeing_fwhm_arcsec))
        pick = n == value
        out[pick] = np.interp(log_re[pick], _LOG_RE_GRID, table)
    return out
