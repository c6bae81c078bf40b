"""The rest-frame continuum template bank (BC03 delayed-tau populations, built by bagpipes)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mtopnet_core.assets import asset_path

__all__ = ["TemplateBank", "load_template_bank"]

_LOG_SSFR_FLOOR = -13.0  # 1/yr; older/passive templates are indistinguishable below this


@dataclass(frozen=True)
class TemplateBank:
    """Rest-frame L_lambda templates per solar mass of living stars on a log-lambda grid.

    Attributes
    ----------
    log_lambda_start : float
        ln of the first pixel-centre wavelength (Angstrom).
    dlnlam : float
        Pixel width in ln(lambda) (1e-4, i.e. ~30 km/s).
    luminosity : numpy.ndarray, shape (T, P), float32
        L_lambda per Msun, erg/s/A/Msun.
    log_ssfr : numpy.ndarray, shape (T,)
        log10 of the current specific SFR, 1/yr (floored at -13).
    age_gyr, tau_gyr, metallicity_zsun : numpy.ndarray, shape (T,)
        Age since the onset of star formation, delayed-tau timescale, metallicity Z/Zsun.
    """

    log_lambda_start: float
    dlnlam: float
    luminosity: np.ndarray
    log_ssfr: np.ndarray
    age_gyr: np.ndarray
    tau_gyr: np.ndarray
    metallicity_zsun: np.ndarray

    @property
    def n_pixels(self) -> int:
        """Number of pixels per template."""
        return self.luminosity.shape[1]

    @property
    def wavelength(self) -> np.ndarray:
        """Pixel-centre rest-frame wavelengths, Angstrom, shape (P,)."""
        return np.exp(self.log_lambda_start + self.dlnlam * np.arange(self.n_pixels))

    def choose(
        self,
        log_ssfr: np.ndarray,
        log_z_star: np.ndarray,
        max_age_gyr: np.ndarray,
        rng: np.random.Generator,
        n_nearest: int = 3,
    ) -> np.ndarray:
        """Pick a template for each galaxy.

        Among templates younger than ``max_age_gyr``, take one of the ``n_nearest`` closest in
        (log sSFR / 0.25 dex, log Z / 0.3 dex), at random, so that galaxies with the same
        properties do not all share one continuum.

        Parameters
        ----------
        log_ssfr : numpy.ndarray, shape (N,)
            Target log10 sSFR, 1/yr.
        log_z_star : numpy.ndarray, shape (N,)
            Target log10 stellar metallicity, Z/Zsun.
        max_age_gyr : numpy.ndarray, shape (N,)
            Oldest allowed template (the age of the Universe at the galaxy's redshift).
        rng : numpy.random.Generator
            Source of the random choice.
        n_nearest : int
            Number of nearest templates to choose from.

        Returns
        -------
        numpy.ndarray, shape (N,), int
            Template indices.
        """
        d_ssfr = (np.maximum(log_ssfr, _LOG_SSFR_FLOOR)[:, None] - self.log_ssfr[None, :]) / 0.25
        d_z = (log_z_star[:, None] - np.log10(self.metallicity_zsun)[None, :]) / 0.3
        distance = d_ssfr**2 + d_z**2
        distance[self.age_gyr[None, :] > max_age_gyr[:, None]] = np.inf
        nearest = np.argpartition(distance, n_nearest, axis=1)[:, :n_nearest]
        pick = rng.integers(0, n_nearest, size=len(log_ssfr))
        return nearest[np.arange(len(log_ssfr)), pick]


@lru_cache(maxsize=1)
def load_template_bank() -> TemplateBank:
    """Load the shipped template bank (verified against its checksum; cached)."""
    with np.load(asset_path("template_bank")) as data:
        luminosity = data["spectra"].astype(np.float32) * data["scale"][:, None].astype(np.float32)
        return TemplateBank(
            log_lambda_start=float(data["log_lambda_start"]),
            dlnlam=float(data["dlnlam"]),
            luminosity=luminosity,
            log_ssfr=np.log10(np.maximum(data["ssfr"], 10.0**_LOG_SSFR_FLOOR)),
            age_gyr=data["age_gyr"],
            tau_gyr=data["tau_gyr"],
            metallicity_zsun=data["metallicity_zsun"],
        )
