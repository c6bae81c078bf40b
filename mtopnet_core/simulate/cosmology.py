"""The cosmology of the mock survey: flat LCDM without radiation, in NumPy.

Equivalent to ``astropy.cosmology.FlatLambdaCDM(H0, Om0)`` (Tcmb0 = 0, its default), which the
tests check to 1e-6; written with NumPy and SciPy only so that the simulator also runs where
astropy is not installed (the project's GPU machines). Defaults: H0 = 70 km/s/Mpc, Om0 = 0.3.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.integrate import cumulative_simpson

from mtopnet_core.conventions import SPEED_OF_LIGHT_KMS

__all__ = ["luminosity_distance_cm", "age_gyr", "arcsec_per_kpc", "comoving_volume_per_dz"]

_MPC_CM = 3.0856775814913673e24
_GYR_S = 3.15576e16  # Julian Gyr, as astropy
_MPC_KM = _MPC_CM / 1e5
_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0
_Z_TABLE = np.linspace(0.0, 12.0, 24001)


@lru_cache(maxsize=8)
def _comoving_table(omega_m: float) -> np.ndarray:
    """Dimensionless comoving distance int_0^z dz'/E(z') on :data:`_Z_TABLE`."""
    inv_e = 1.0 / np.sqrt(omega_m * (1.0 + _Z_TABLE) ** 3 + 1.0 - omega_m)
    return cumulative_simpson(inv_e, x=_Z_TABLE, initial=0.0)


def _comoving_mpc(z: np.ndarray, h0: float, omega_m: float) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if np.any((z < 0) | (z > _Z_TABLE[-1])):
        raise ValueError(f"redshift outside the tabulated range 0-{_Z_TABLE[-1]:g}")
    return SPEED_OF_LIGHT_KMS / h0 * np.interp(z, _Z_TABLE, _comoving_table(float(omega_m)))


def luminosity_distance_cm(z: np.ndarray, h0: float = 70.0, omega_m: float = 0.3) -> np.ndarray:
    """Luminosity distance, cm, for redshifts ``z`` (any shape, 0-12)."""
    return (1.0 + np.asarray(z)) * _comoving_mpc(z, h0, omega_m) * _MPC_CM


def age_gyr(z: np.ndarray, h0: float = 70.0, omega_m: float = 0.3) -> np.ndarray:
    """Age of the Universe at redshift ``z``, Gyr (closed form for flat LCDM, no radiation)."""
    omega_l = 1.0 - omega_m
    hubble_time_gyr = _MPC_KM / h0 / _GYR_S
    x = np.sqrt(omega_l / omega_m) * (1.0 + np.asarray(z, dtype=np.float64)) ** -1.5
    return 2.0 / (3.0 * np.sqrt(omega_l)) * hubble_time_gyr * np.arcsinh(x)


def arcsec_per_kpc(z: np.ndarray, h0: float = 70.0, omega_m: float = 0.3) -> np.ndarray:
    """Proper angular scale at redshift ``z``, arcsec per kpc."""
    angular_diameter_kpc = _comoving_mpc(z, h0, omega_m) * 1e3 / (1.0 + np.asarray(z))
    return _ARCSEC_PER_RAD / angular_diameter_kpc


def comoving_volume_per_dz(z: np.ndarray, h0: float = 70.0, omega_m: float = 0.3) -> np.ndarray:
    """Comoving volume per unit redshift and steradian, Mpc^3 (flat: D_C^2 c / H(z))."""
    z = np.asarray(z, dtype=np.float64)
    hubble_distance = SPEED_OF_LIGHT_KMS / h0 / np.sqrt(omega_m * (1.0 + z) ** 3 + 1.0 - omega_m)
    return _comoving_mpc(z, h0, omega_m) ** 2 * hubble_distance
