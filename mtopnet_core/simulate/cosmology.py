"""The cosmology of the mock survey (astropy's flat LCDM, parameters from the settings)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM

__all__ = ["cosmology", "luminosity_distance_cm", "age_gyr", "arcsec_per_kpc"]


@lru_cache(maxsize=8)
def cosmology(h0: float = 70.0, omega_m: float = 0.3) -> FlatLambdaCDM:
    """Flat LCDM cosmology (default H0 = 70 km/s/Mpc, Omega_m = 0.3, no radiation)."""
    return FlatLambdaCDM(H0=h0, Om0=omega_m)


def luminosity_distance_cm(z: np.ndarray, h0: float = 70.0, omega_m: float = 0.3) -> np.ndarray:
    """Luminosity distance, cm, for redshifts ``z`` (any shape)."""
    return cosmology(h0, omega_m).luminosity_distance(np.asarray(z)).to_value(u.cm)


def age_gyr(z: np.ndarray, h0: float = 70.0, omega_m: float = 0.3) -> np.ndarray:
    """Age of the Universe at redshift ``z``, Gyr."""
    return cosmology(h0, omega_m).age(np.asarray(z)).to_value(u.Gyr)


def arcsec_per_kpc(z: np.ndarray, h0: float = 70.0, omega_m: float = 0.3) -> np.ndarray:
    """Proper angular scale at redshift ``z``, arcsec per kpc."""
    return cosmology(h0, omega_m).arcsec_per_kpc_proper(np.asarray(z)).to_value(u.arcsec / u.kpc)
