"""Mock MOONS spectra: continuum + emission lines, fibre losses, sky, atmosphere and noise.

For each galaxy of a truth catalogue (:mod:`mtopnet_core.simulate.population`):

1. its template, scaled by M* and attenuated by Calzetti dust, is broadened by the stellar
   velocity dispersion and the instrument profile of each channel (Gaussians in velocity, added
   in quadrature), redshifted, dimmed by 4 pi D_L^2 (1+z) and integrated onto the MOONS pixels
   (flux-conserving: the cumulative integral is differenced at the pixel edges);
2. emission lines are added as Gaussians in velocity (gas dispersion and instrument profile in
   quadrature), integrated exactly over each pixel with the error function;
3. m_H is measured on this total model; the fibre keeps ``fibre_fraction`` of it;
4. counts follow S = F A T_atm T_inst t dlambda lambda / (h c); the XSWITCH variance is
   var = S_obj + 2 S_sky + 2 N_sub n_pix RN^2 + 2 D t n_pix (electrons, assumed form); the
   noise is drawn with the object's own seed, and the counts are flux-calibrated back
   (the atmosphere is corrected, the fibre loss is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.special import ndtr

from mtopnet_core import grid
from mtopnet_core.conventions import FLUX_UNIT, MASK_BITS, SPEED_OF_LIGHT_KMS
from mtopnet_core.simulate import cosmology
from mtopnet_core.simulate.dust import calzetti_k, transmission
from mtopnet_core.simulate.emission import EMISSION_WAVELENGTHS, line_fluxes
from mtopnet_core.simulate.photometry import C_ANGSTROM, ab_magnitude
from mtopnet_core.simulate.settings import SimulationSettings
from mtopnet_core.simulate.sky import SkyModel, load_sky_model
from mtopnet_core.simulate.templates import TemplateBank, load_template_bank

__all__ = ["SpectrumSimulator", "SimulatedBatch"]

_HC_ERG_A = 6.62607015e-27 * C_ANGSTROM  # h c in erg Angstrom
_SIGMA_PER_FWHM = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class SimulatedBatch:
    """Spectra of a batch of galaxies on the MOONS grid.

    Attributes
    ----------
    flux : numpy.ndarray, shape (N, 12217), float32
        Noisy flux, 1e-17 erg/s/cm^2/A (light entering the fibre, telluric-corrected).
    error : numpy.ndarray, shape (N, 12217), float32
        1-sigma error of ``flux``, same units.
    model : numpy.ndarray, shape (N, 12217), float64
        Noiseless flux entering the fibre, same units.
    mask : numpy.ndarray, shape (N, 12217), uint8
        Quality bits (:data:`mtopnet_core.conventions.MASK_BITS`), 0 = good.
    m_h : numpy.ndarray, shape (N,)
        H-band AB magnitude of the whole galaxy (continuum + lines, before fibre losses).
    """

    flux: np.ndarray
    error: np.ndarray
    model: np.ndarray
    mask: np.ndarray
    m_h: np.ndarray


class SpectrumSimulator:
    """Turns truth-catalogue rows into MOONS spectra.

    Parameters
    ----------
    settings : SimulationSettings, optional
    bank : TemplateBank, optional
        Defaults to the shipped template bank.
    sky : SkyModel, optional
        Defaults to the shipped sky model.
    """

    def __init__(self, settings: SimulationSettings | None = None, bank: TemplateBank | None = None,
                 sky: SkyModel | None = None) -> None:
        self.settings = settings or SimulationSettings()
        self.bank = bank or load_template_bank()
        self.sky = sky or load_sky_model()
        self.wave = np.asarray(grid.wavelength_grid())
        self.width = grid.pixel_widths()
        self.rest_wave = self.bank.wavelength
        self._rest_k = calzetti_k(self.rest_wave)  # the dust curve on the bank's grid, once
        # ln-lambda edges of the template pixels
        self._rest_log_edges = self.bank.log_lambda_start + self.bank.dlnlam * (
            np.arange(self.bank.n_pixels + 1) - 0.5
        )
        self._throughput = np.repeat([c.throughput for c in grid.CHANNELS], [c.n_pixels for c in grid.CHANNELS])

    @cached_property
    def static_mask(self) -> np.ndarray:
        """Quality bits common to every spectrum, shape (12217,), uint8."""
        mask = np.zeros(grid.N_CHANNELS, dtype=np.uint8)
        edge = self.settings.detector_edge_pixels
        for sl in grid.channel_slices():
            mask[sl.start:sl.start + edge] |= MASK_BITS["detector_edge"]
            mask[sl.stop - edge:sl.stop] |= MASK_BITS["detector_edge"]
        mask[self.sky.transmission < self.settings.telluric_flag_below] |= MASK_BITS["telluric"]
        return mask

    def electrons_per_flux(self, t_exp_s: float) -> np.ndarray:
        """Detected electrons per unit F_lambda (erg/s/cm^2/A) in every channel, shape (12217,)."""
        s = self.settings
        return (s.telescope_area_cm2 * self.sky.transmission * self._throughput * t_exp_s * self.width
                * self.wave / _HC_ERG_A)

    def sky_electrons(self, t_exp_s: float) -> np.ndarray:
        """Sky electrons collected by one fibre in every channel, shape (12217,)."""
        s = self.settings
        fibre_area = np.pi * (0.5 * s.fibre_diameter_arcsec) ** 2
        return self.sky.emission * fibre_area * s.telescope_area_cm2 * self._throughput * t_exp_s * self.width

    def variance_electrons(self, object_electrons: np.ndarray, t_exp_s: float) -> np.ndarray:
        """XSWITCH variance per channel in electrons^2, same shape as ``object_electrons``."""
        s = self.settings
        n_sub = np.round(t_exp_s / s.sub_exposure_s)
        detector = 2 * n_sub * s.pixels_per_channel * s.read_noise_e**2 \
            + 2 * s.dark_e_per_s * t_exp_s * s.pixels_per_channel
        return np.maximum(object_electrons, 0.0) + 2 * self.sky_electrons(t_exp_s) + detector

    def _continuum(self, row: pd.Series, distance_cm: float) -> np.ndarray:
        """Noiseless stellar continuum of the whole galaxy, erg/s/cm^2/A, shape (12217,)."""
        z = row.z
        lum = self.bank.luminosity[int(row.template_index)].astype(np.float64)
        lum = lum * 10.0**row.log_mstar * transmission(self._rest_k, row.ebv_star)
        f_obs = lum / (4 * np.pi * distance_cm**2 * (1 + z))
        out = np.empty(grid.N_CHANNELS)
        for ch, sl in zip(grid.CHANNELS, grid.channel_slices(), strict=True):
            sigma_inst = SPEED_OF_LIGHT_KMS / ch.resolving_power * _SIGMA_PER_FWHM
            sigma_pix = np.hypot(row.sigma_star_kms, sigma_inst) / SPEED_OF_LIGHT_KMS / self.bank.dlnlam
            half = int(np.ceil(5 * sigma_pix))
            edges = self.wave[sl][[0, -1]] + np.array([-1.0, 1.0]) * self.width[sl][[0, -1]]
            k0 = int(np.floor((np.log(edges[0] / (1 + z)) - self._rest_log_edges[0]) / self.bank.dlnlam)) - half - 2
            k1 = int(np.ceil((np.log(edges[1] / (1 + z)) - self._rest_log_edges[0]) / self.bank.dlnlam)) + half + 2
            k0, k1 = max(k0, 0), min(k1, self.bank.n_pixels)
            kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_pix) ** 2)
            smooth = np.convolve(f_obs[k0:k1], kernel / kernel.sum(), mode="same")
            obs_edges = np.exp(self._rest_log_edges[k0:k1 + 1]) * (1 + z)
            cumulative = np.concatenate([[0.0], np.cumsum(smooth * np.diff(obs_edges))])
            pixel_edges = np.concatenate([self.wave[sl] - 0.5 * self.width[sl],
                                          [self.wave[sl][-1] + 0.5 * self.width[sl][-1]]])
            out[sl] = np.diff(np.interp(pixel_edges, obs_edges, cumulative)) / self.width[sl]
        return out

    def _lines(self, row: pd.Series, fluxes: np.ndarray) -> np.ndarray:
        """Emission lines of the whole galaxy, erg/s/cm^2/A, shape (12217,)."""
        out = np.zeros(grid.N_CHANNELS)
        observed = EMISSION_WAVELENGTHS * (1 + row.z)
        for ch, sl in zip(grid.CHANNELS, grid.channel_slices(), strict=True):
            sigma_v = np.hypot(row.sigma_gas_kms, SPEED_OF_LIGHT_KMS / ch.resolving_power * _SIGMA_PER_FWHM)
            wave, width = self.wave[sl], self.width[sl]
            for centre, flux in zip(observed, fluxes, strict=True):
                sigma = centre * sigma_v / SPEED_OF_LIGHT_KMS
                lo, hi = np.searchsorted(wave, [centre - 8 * sigma, centre + 8 * sigma])
                if hi <= lo:
                    continue
                w, dw = wave[lo:hi], width[lo:hi]
                fraction = ndtr((w + 0.5 * dw - centre) / sigma) - ndtr((w - 0.5 * dw - centre) / sigma)
                out[sl][lo:hi] += flux * fraction / dw
        return out

    def simulate(self, catalogue: pd.DataFrame, noise: bool = True) -> SimulatedBatch:
        """Simulate the spectra of catalogue rows.

        Parameters
        ----------
        catalogue : pandas.DataFrame, N rows
            Truth rows from :func:`~mtopnet_core.simulate.population.draw_population`.
        noise : bool
            Draw the noise (with each row's ``seed``); if False, ``flux`` is the noiseless model.

        Returns
        -------
        SimulatedBatch
        """
        s = self.settings
        n = len(catalogue)
        distance = cosmology.luminosity_distance_cm(catalogue["z"].to_numpy(), s.h0, s.omega_m)
        fluxes = line_fluxes(catalogue["z"].to_numpy(), catalogue["log_sfr"].to_numpy(),
                             catalogue["oh12"].to_numpy(), catalogue["ebv_gas"].to_numpy(), distance, s)
        flux = np.empty((n, grid.N_CHANNELS), dtype=np.float32)
        error = np.empty_like(flux)
        model = np.empty((n, grid.N_CHANNELS))
        m_h = np.empty(n)
        h_band = grid.channel_slices()[-1]
        conversions: dict[float, np.ndarray] = {}  # one per exposure time in the batch
        for i, row in enumerate(catalogue.itertuples(index=False)):
            total = self._continuum(row, distance[i]) + self._lines(row, fluxes[i])
            m_h[i] = ab_magnitude(self.wave[h_band], total[h_band], self.width[h_band])
            model[i] = total * row.fibre_fraction / FLUX_UNIT
            t_exp_s = row.t_exp_h * 3600.0
            if t_exp_s not in conversions:
                conversions[t_exp_s] = self.electrons_per_flux(t_exp_s) * FLUX_UNIT
            conversion = conversions[t_exp_s]
            electrons = model[i] * conversion
            sigma = np.sqrt(self.variance_electrons(electrons, t_exp_s))
            noisy = electrons
            if noise:
                rng = np.random.default_rng(int(row.seed))
                noisy = electrons + sigma * rng.standard_normal(grid.N_CHANNELS)
            flux[i] = noisy / conversion
            error[i] = sigma / conversion
        mask = np.broadcast_to(self.static_mask, (n, grid.N_CHANNELS)).copy()
        return SimulatedBatch(flux=flux, error=error, model=model, mask=mask, m_h=m_h)
