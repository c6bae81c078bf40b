"""The per-channel night-sky model: OH + continuum emission and atmospheric transmission."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mtopnet_core import grid
from mtopnet_core.assets import AssetError, asset_path
from mtopnet_core.conventions import SKY_MASK_THRESHOLD

__all__ = ["SkyModel", "load_sky_model"]



@dataclass(frozen=True)
class SkyModel:
    """Sky emission and transmission on the MOONS grid.

    Attributes
    ----------
    emission : numpy.ndarray, shape (12217,), float64
        Sky surface brightness, photons/s/cm^2/A/arcsec^2.
    transmission : numpy.ndarray, shape (12217,), float64
        Atmospheric transmission at the model's airmass.
    airmass : float
    """

    emission: np.ndarray
    transmission: np.ndarray
    airmass: float

    def mask(self, threshold: float = SKY_MASK_THRESHOLD) -> np.ndarray:
        """Channels where the sky exceeds ``threshold`` (paper, section 3.1), bool (12217,)."""
        return self.emission > threshold


@lru_cache(maxsize=1)
def load_sky_model() -> SkyModel:
    """Load the shipped sky model; its grid must be the MOONS grid."""
    path = asset_path("sky_model")
    with np.load(path) as data:
        if str(data["grid_fingerprint"]) != grid.grid_fingerprint():
            raise AssetError(f"{path}: sky model was made for another wavelength grid")
        return SkyModel(
            emission=data["sky"].astype(np.float64),
            transmission=data["transmission"].astype(np.float64),
            airmass=float(data["airmass"]),
        )
