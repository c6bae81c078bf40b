"""The galaxy population of the mock survey (paper, section 2 and Fig. 1).

Galaxies are drawn in fixed-size blocks of candidates from one seeded generator and kept if they
pass the MOONRISE-like selection, so the first N galaxies of a seed do not depend on N. Every
truth value is computed here, except the exact m_H (which includes the emission lines and is
measured on the simulated spectrum); the continuum-only m_H used for the selection is exact for
the template, dust and distance chosen.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from mtopnet_core.errors import UsageError
from mtopnet_core.simulate import cosmology
from mtopnet_core.simulate.dust import R_V, calzetti_k, transmission
from mtopnet_core.simulate.emission import catalogue_line_fluxes, line_fluxes
from mtopnet_core.simulate.fibre import fibre_fraction
from mtopnet_core.simulate.photometry import H_AB_DENOMINATOR, H_FILTER_WAVELENGTH, h_filter
from mtopnet_core.simulate.settings import SimulationSettings
from mtopnet_core.simulate.templates import TemplateBank, load_template_bank

__all__ = ["draw_population", "object_seeds", "GALAXY_CLASSES", "POPULATIONS", "continuum_mag_h"]

logger = logging.getLogger(__name__)

GALAXY_CLASSES = ("star-forming", "quiescent", "starburst")
POPULATIONS = ("lightcone", "exponential")
"""Values of ``SimulationSettings.population``."""
_BLOCK = 8192  # candidates per draw; fixed so that populations are prefix-stable


def object_seeds(master_seed: int, indices: np.ndarray) -> np.ndarray:
    """The seed of each object's own noise generator.

    Parameters
    ----------
    master_seed : int
        Seed of the data set.
    indices : numpy.ndarray, shape (N,)
        Row numbers of the objects.

    Returns
    -------
    numpy.ndarray, shape (N,), int64
        Non-negative 63-bit seeds; ``numpy.random.default_rng(seed)`` reproduces the noise.
    """
    return np.array(
        [
            int(np.random.SeedSequence([master_seed, int(i)]).generate_state(1, np.uint64)[0] >> 1)
            for i in indices
        ],
        dtype=np.int64,
    )


def _lightcone_table(s: SimulationSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Galaxies per cell of (class, z, log M*) in a light cone, before the selection.

    dN / dz dlog M* = dV/dz * phi(M*, z): the blue mass function is a Schechter function with
    slope ``smf_alpha_blue`` and the red one, made by mass quenching, has the slope one higher
    and the same characteristic mass (Peng et al. 2010); their normalisations evolve as set in
    ``SimulationSettings``.

    Returns
    -------
    z_edges : numpy.ndarray, shape (NZ + 1,)
    m_edges : numpy.ndarray, shape (NM + 1,)
        Cell edges in redshift and log10 M*/Msun.
    cells : numpy.ndarray, shape (2, NZ, NM)
        Relative numbers of star-forming (0) and quiescent (1) galaxies per cell.
    """
    z_edges = np.linspace(s.z_min, s.z_max, int(round((s.z_max - s.z_min) / 0.01)) + 1)
    m_edges = np.linspace(s.log_mstar_min, s.log_mstar_max,
                          int(round((s.log_mstar_max - s.log_mstar_min) / 0.01)) + 1)
    z = 0.5 * (z_edges[1:] + z_edges[:-1])
    ratio = 10.0 ** (0.5 * (m_edges[1:] + m_edges[:-1]) - s.smf_log_mchar)
    blue_shape = ratio ** (s.smf_alpha_blue + 1.0) * np.exp(-ratio)  # per dlog M
    volume = cosmology.comoving_volume_per_dz(z, s.h0, s.omega_m) * (1.0 + z) ** s.smf_blue_phi_evolution
    red_to_blue = s.red_to_blue_at_z1 * ((1.0 + z) / 2.0) ** s.red_to_blue_evolution
    cells = np.stack([volume[:, None] * blue_shape[None, :],
                      (volume * red_to_blue)[:, None] * (blue_shape * ratio)[None, :]])
    return z_edges, m_edges, cells


def _draw_lightcone(rng: np.random.Generator, n: int,
                    s: SimulationSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Redshift, log M* and quiescence of ``n`` light-cone galaxies (see :func:`_lightcone_table`)."""
    z_edges, m_edges, cells = _lightcone_table(s)
    cdf = np.cumsum(cells.ravel())
    index = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), cdf.size - 1)
    quiescent, iz, im = np.unravel_index(index, cells.shape)
    z = z_edges[iz] + rng.random(n) * np.diff(z_edges)[iz]
    log_mass = m_edges[im] + rng.random(n) * np.diff(m_edges)[im]
    return z, log_mass, quiescent.astype(bool)


def _draw_redshift(rng: np.random.Generator, n: int, s: SimulationSettings) -> np.ndarray:
    # inverse CDF of a truncated exponential
    span = 1.0 - np.exp(-(s.z_max - s.z_min) / s.z_scale)
    return s.z_min - s.z_scale * np.log(1.0 - rng.random(n) * span)


def _draw_log_mass(rng: np.random.Generator, n: int, s: SimulationSettings) -> np.ndarray:
    grid = np.linspace(s.log_mstar_min, s.log_mstar_max, 2001)
    ratio = 10.0 ** (grid - s.schechter_log_mchar)
    density = ratio ** (s.schechter_alpha + 1.0) * np.exp(-ratio)  # dN / dlog M
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(rng.random(n), cdf / cdf[-1], grid)


def _main_sequence(log_mass: np.ndarray, age_gyr: np.ndarray) -> np.ndarray:
    """Speagle et al. (2014) main sequence, log SFR in Msun/yr, t = age of the Universe in Gyr."""
    return (0.84 - 0.026 * age_gyr) * log_mass - (6.51 - 0.11 * age_gyr)


def _schreiber_main_sequence(log_mass: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Schreiber et al. (2015, eq. 9) main sequence, log SFR in Msun/yr, used by the paper's EGG.

    Its linear part does not depend on the IMF (mass and SFR shift alike); the bending mass is
    moved by the Salpeter-to-Chabrier 0.24 dex, since our masses are Chabrier's.
    """
    m, r = log_mass + 0.24 - 9.0, np.log10(1.0 + z)
    return m - 0.24 - 0.5 + 1.5 * r - 0.3 * np.maximum(0.0, m - 0.36 - 2.5 * r) ** 2


def _gas_metallicity(log_mass: np.ndarray, z: np.ndarray, rng: np.random.Generator,
                     s: SimulationSettings) -> np.ndarray:
    """Curti et al. (2020) mass-metallicity relation, lowered with redshift, with scatter."""
    z0, log_m0, gamma, beta = 8.793, 10.02, 0.28, 1.2
    oh = z0 - gamma / beta * np.log10(1.0 + 10.0 ** (-beta * (log_mass - log_m0)))
    return oh + s.oh_dz * z + rng.normal(0.0, s.oh_scatter_dex, z.size)


def _effective_radius_kpc(log_mass: np.ndarray, z: np.ndarray, quiescent: np.ndarray,
                          rng: np.random.Generator, s: SimulationSettings) -> np.ndarray:
    """van der Wel et al. (2014) size-mass relations: R_e = A (1+z)^beta (M*/5e10)^alpha."""
    log_a = np.where(quiescent, 0.60, 0.86) + np.where(quiescent, -1.48, -0.75) * np.log10((1 + z) / 1.25)
    alpha = np.where(quiescent, 0.75, 0.22)
    scatter = np.where(quiescent, s.size_scatter_dex[1], s.size_scatter_dex[0])
    log_re = log_a + alpha * (log_mass - np.log10(5e10)) + rng.normal(0.0, 1.0, z.size) * scatter
    return 10.0**log_re


def continuum_mag_h(bank: TemplateBank, template: np.ndarray, log_mass: np.ndarray,
                    ebv_star: np.ndarray, z: np.ndarray, distance_cm: np.ndarray) -> np.ndarray:
    """H-band AB magnitude of the dust-attenuated stellar continuum (no lines, no fibre loss).

    Integrates the rest-frame template through the redshifted H filter on the template's own
    log-lambda grid.

    Parameters
    ----------
    bank : TemplateBank
    template : numpy.ndarray, shape (N,), int
    log_mass, ebv_star, z, distance_cm : numpy.ndarray, shape (N,)
        log10 M* (Msun), stellar E(B-V) (mag), redshift, luminosity distance (cm).

    Returns
    -------
    numpy.ndarray, shape (N,)
        AB magnitudes.
    """
    lo, hi = H_FILTER_WAVELENGTH[0], H_FILTER_WAVELENGTH[-1]
    width = int(np.ceil(np.log(hi / lo) / bank.dlnlam)) + 3
    # the bank's wavelengths and the dust curve on them, once: each galaxy reads its columns
    rest_grid = np.exp(bank.log_lambda_start + bank.dlnlam * np.arange(bank.luminosity.shape[1]))
    k_grid = calzetti_k(rest_grid)
    numerator = np.empty(len(z))
    for part in np.array_split(np.arange(len(z)), max(1, len(z) // 1024)):  # bounded memory
        zp = z[part]
        start = np.floor((np.log(lo / (1 + zp)) - bank.log_lambda_start) / bank.dlnlam).astype(int)
        columns = start[:, None] + np.arange(width)[None, :]
        observed = rest_grid[columns] * (1 + zp)[:, None]
        lum = bank.luminosity[template[part, None], columns].astype(np.float64)
        lum *= transmission(k_grid[columns], ebv_star[part, None]) * (10.0 ** log_mass[part])[:, None]
        f_obs = lum / (4 * np.pi * distance_cm[part, None] ** 2 * (1 + zp)[:, None])
        numerator[part] = np.sum(f_obs * h_filter(observed) * observed**2 * bank.dlnlam, axis=1)
    return -2.5 * np.log10(numerator / H_AB_DENOMINATOR) - 48.6


def _draw_block(rng: np.random.Generator, n: int, s: SimulationSettings,
                bank: TemplateBank) -> pd.DataFrame:
    """Draw ``n`` candidate galaxies with every truth value (before the selection)."""
    if s.population == "lightcone":
        z, log_mass, quiescent = _draw_lightcone(rng, n, s)
    else:
        z = _draw_redshift(rng, n, s)
        log_mass = _draw_log_mass(rng, n, s)
        p_quiescent = 1.0 / (1.0 + np.exp(-(log_mass - (s.quiescent_log_m0 + s.quiescent_dlogm_dz * z))
                                           / s.quiescent_width))
        quiescent = rng.random(n) < p_quiescent
    t_univ = cosmology.age_gyr(z, s.h0, s.omega_m)
    distance = cosmology.luminosity_distance_cm(z, s.h0, s.omega_m)

    starburst = ~quiescent & (rng.random(n) < s.starburst_fraction)
    galaxy_class = np.where(quiescent, 1, np.where(starburst, 2, 0))

    main_sequence = _schreiber_main_sequence(log_mass, z) if s.population == "lightcone" else \
        _main_sequence(log_mass, t_univ)
    log_sfr = main_sequence + rng.normal(0.0, s.ms_scatter_dex, n)
    log_sfr = np.where(starburst, log_sfr + s.starburst_boost_dex, log_sfr)
    log_sfr = np.where(quiescent, log_sfr - rng.uniform(*s.quiescent_offset_dex, n), log_sfr)

    oh12 = _gas_metallicity(log_mass, z, rng, s)
    # Garn & Best (2010): A(Halpha) from stellar mass; Calzetti k(Halpha) = 3.33
    x = log_mass - 10.0
    a_halpha = 0.91 + 0.77 * x + 0.11 * x**2 - 0.09 * x**3 + rng.normal(0.0, s.aha_scatter_mag, n)
    a_halpha = np.maximum(a_halpha + np.where(starburst, s.starburst_extra_aha_mag, 0.0), 0.0)
    ebv_gas = a_halpha / 3.33
    f_star = np.minimum(s.f_star_z0 + s.f_star_slope * z, s.f_star_max)
    ebv_star = np.where(quiescent, rng.uniform(0.0, s.quiescent_ebv_star_max, n), f_star * ebv_gas)
    ebv_gas = np.where(quiescent, ebv_star / f_star, ebv_gas)

    sersic_n = np.where(quiescent, 4, 1)
    r_eff_kpc = _effective_radius_kpc(log_mass, z, quiescent, rng, s)
    r_eff_arcsec = r_eff_kpc * cosmology.arcsec_per_kpc(z, s.h0, s.omega_m)
    fibre = fibre_fraction(r_eff_arcsec, sersic_n, s.fibre_diameter_arcsec, s.seeing_fwhm_arcsec)

    def dispersion(params: tuple[float, float, float, float]) -> np.ndarray:
        amplitude, slope, low, high = params
        return np.clip(amplitude * 10.0 ** (slope * (log_mass - 10.0)), low, high)

    log_z_star = np.clip(0.3 * (log_mass - 10.0) - 0.15, -0.7, 0.4) + rng.normal(0.0, 0.1, n)
    template = bank.choose(log_sfr - log_mass, log_z_star, t_univ, rng)
    mag_cont = continuum_mag_h(bank, template, log_mass, ebv_star, z, distance)
    weights = np.asarray(s.exposure_weights, dtype=np.float64)
    t_exp = rng.choice(np.asarray(s.exposure_hours), size=n, p=weights / weights.sum())
    fluxes = catalogue_line_fluxes(line_fluxes(z, log_sfr, oh12, ebv_gas, distance, s))
    return pd.DataFrame(
        {
            "z": z,
            "log_mstar": log_mass,
            "log_sfr": log_sfr,
            "galaxy_class": pd.Categorical.from_codes(galaxy_class, GALAXY_CLASSES),
            "sersic_n": sersic_n.astype(np.int8),
            "r_eff_arcsec": r_eff_arcsec,
            "fibre_fraction": fibre,
            "t_exp_h": t_exp,
            "a_v": R_V * ebv_star,
            "ebv_star": ebv_star,
            "ebv_gas": ebv_gas,
            "oh12": oh12,
            "sigma_gas_kms": dispersion(s.sigma_gas_kms),
            "sigma_star_kms": dispersion(s.sigma_star_kms),
            "template_index": template.astype(np.int16),
            "m_h_continuum": mag_cont,
            **fluxes,
        }
    )


def draw_population(n: int, seed: int, settings: SimulationSettings | None = None) -> pd.DataFrame:
    """Draw the truth catalogue of a mock survey.

    Parameters
    ----------
    n : int
        Number of galaxies passing the selection.
    seed : int
        Master seed of the data set.
    settings : SimulationSettings, optional
        Defaults to ``SimulationSettings()``.

    Returns
    -------
    pandas.DataFrame, N rows
        One row per galaxy: ``object_id`` (str), ``seed`` (int64, the object's noise seed) and
        the truth values (redshift, log M*/Msun, log SFR/(Msun/yr), class, Sersic n, size,
        fibre fraction, exposure time in hours, dust, metallicity, velocity dispersions,
        template, continuum m_H, line fluxes in erg/s/cm^2).

    Raises
    ------
    ValueError
        If ``n`` is not positive or ``seed`` is negative.
    """
    if n <= 0:
        raise UsageError(f"number of spectra must be positive, got {n}")
    if seed < 0:
        raise UsageError(f"seed must be non-negative, got {seed}")
    s = settings or SimulationSettings()
    if s.population not in POPULATIONS:
        raise UsageError(f"unknown population {s.population!r}; choose one of {', '.join(POPULATIONS)}")
    bank = load_template_bank()
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    kept, total = [], 0
    while total < n:
        block = _draw_block(rng, _BLOCK, s, bank)
        selected = (block["z"] > s.z_min) & (block["z"] < s.z_max) & (
            (block["m_h_continuum"] < s.mag_h_limit) | (block["log_mstar"] > s.log_mstar_limit)
        )
        kept.append(block[selected.to_numpy()])
        total += int(selected.sum())
    catalogue = pd.concat(kept, ignore_index=True).iloc[:n].reset_index(drop=True)
    catalogue.insert(0, "object_id", [f"MOCK-{seed}-{i:07d}" for i in range(n)])
    catalogue.insert(1, "seed", object_seeds(seed, np.arange(n)))
    logger.info("drew %d galaxies (seed %d)", n, seed)
    return catalogue
