"""Nebular emission-line fluxes from SFR, gas metallicity and dust.

- Halpha from SFR: Kennicutt & Evans (2012), log SFR = log L(Halpha) - 41.27 (Kroupa IMF).
- Hydrogen lines: Case B, T = 1e4 K, n_e = 100 cm^-3 (Osterbrock & Ferland 2006; Hummer &
  Storey 1987 for Paschen).
- Metal lines: strong-line calibrations of Curti et al. (2020, Table 2) as polynomials in
  x = 12 + log(O/H) - 8.69, evaluated inside their calibrated range 7.6-8.85; [OIII]/Hbeta is
  raised with redshift at fixed metallicity (Shapley et al. 2015 direction; size assumed).
- Fixed doublet ratios: [OIII] 5008/4960 = 2.98, [NII] 6585/6550 = 2.94, [OII] 3730/3727 = 1.4,
  [SII] 6718/6733 = 1.4, [SIII] 9533/9071 = 2.44.
- Dust: Calzetti (2000) with the gas colour excess.
Wavelengths are rest-frame vacuum, Angstrom.
"""

from __future__ import annotations

import numpy as np

from mtopnet_core.simulate.dust import calzetti_k
from mtopnet_core.simulate.settings import SimulationSettings

__all__ = ["EMISSION_LINES", "EMISSION_WAVELENGTHS", "line_fluxes", "catalogue_line_fluxes"]

EMISSION_LINES: tuple[tuple[str, float], ...] = (
    ("OII_3727", 3727.09),
    ("OII_3730", 3729.88),
    ("Hdelta", 4102.89),
    ("Hgamma", 4341.68),
    ("Hbeta", 4862.68),
    ("OIII_4960", 4960.30),
    ("OIII_5008", 5008.24),
    ("NII_6550", 6549.86),
    ("Halpha", 6564.61),
    ("NII_6585", 6585.27),
    ("SII_6718", 6718.29),
    ("SII_6733", 6732.67),
    ("SIII_9071", 9071.10),
    ("Pa8", 9548.59),
    ("SIII_9533", 9533.20),
    ("Pa7", 10052.13),
    ("HeI_10833", 10833.31),
)
"""Lines added to the mock spectra: (name, rest vacuum wavelength in Angstrom)."""

EMISSION_WAVELENGTHS = np.array([w for _, w in EMISSION_LINES])

_INDEX = {name: i for i, (name, _) in enumerate(EMISSION_LINES)}

# Case B ratios to Hbeta, T = 1e4 K.
_BALMER_TO_HBETA = {"Halpha": 2.86, "Hgamma": 0.468, "Hdelta": 0.259, "Pa7": 0.0554, "Pa8": 0.0367}

# Curti et al. (2020), Table 2: log R = sum c_n x^n.
_CURTI = {
    "R3": (-0.277, -3.549, -3.593, -0.981),  # [OIII]5007 / Hbeta
    "R2": (0.435, -1.362, -5.655, -4.851, -0.478, 0.736),  # [OII]3727,29 / Hbeta
    "N2": (-0.489, 1.513, -2.554, -5.293, -2.867),  # [NII]6584 / Halpha
    "S2": (-0.442, -0.360, -6.271, -8.339, -3.559),  # [SII]6717,31 / Halpha
}
_CURTI_RANGE = (7.6, 8.85)


def _curti(name: str, oh12: np.ndarray) -> np.ndarray:
    x = np.clip(oh12, *_CURTI_RANGE) - 8.69
    return 10.0 ** np.polynomial.polynomial.polyval(x, _CURTI[name])


def line_fluxes(
    z: np.ndarray,
    log_sfr: np.ndarray,
    oh12: np.ndarray,
    ebv_gas: np.ndarray,
    luminosity_distance_cm: np.ndarray,
    settings: SimulationSettings,
) -> np.ndarray:
    """Observed (dust-attenuated) fluxes of every line in :data:`EMISSION_LINES`.

    Parameters
    ----------
    z, log_sfr, oh12, ebv_gas, luminosity_distance_cm : numpy.ndarray, shape (N,)
        Redshift, log10 SFR (Msun/yr), gas 12+log(O/H), gas E(B-V) (mag), luminosity distance (cm).
    settings : SimulationSettings
        Supplies the assumed ratios ([SIII], He I, [OIII] evolution).

    Returns
    -------
    numpy.ndarray, shape (N, 17)
        Total line flux reaching the telescope, erg/s/cm^2 (before fibre losses).
    """
    log_sfr = np.asarray(log_sfr, dtype=np.float64)
    l_halpha = 10.0 ** (log_sfr + 41.27)  # erg/s, intrinsic
    l_hbeta = l_halpha / _BALMER_TO_HBETA["Halpha"]
    lum = np.zeros((log_sfr.size, len(EMISSION_LINES)))
    for name, ratio in _BALMER_TO_HBETA.items():
        lum[:, _INDEX[name]] = ratio * l_hbeta
    lum[:, _INDEX["Hbeta"]] = l_hbeta
    r3 = _curti("R3", oh12) * 10.0 ** (settings.oiii_hbeta_offset_dex_per_z * np.asarray(z))
    lum[:, _INDEX["OIII_5008"]] = r3 * l_hbeta
    lum[:, _INDEX["OIII_4960"]] = r3 * l_hbeta / 2.98
    oii = _curti("R2", oh12) * l_hbeta
    lum[:, _INDEX["OII_3730"]] = oii * 1.4 / 2.4
    lum[:, _INDEX["OII_3727"]] = oii / 2.4
    nii = _curti("N2", oh12) * l_halpha
    lum[:, _INDEX["NII_6585"]] = nii
    lum[:, _INDEX["NII_6550"]] = nii / 2.94
    sii = _curti("S2", oh12) * l_halpha
    lum[:, _INDEX["SII_6718"]] = sii * 1.4 / 2.4
    lum[:, _INDEX["SII_6733"]] = sii / 2.4
    siii = settings.siii_9533_to_halpha * l_halpha
    lum[:, _INDEX["SIII_9533"]] = siii
    lum[:, _INDEX["SIII_9071"]] = siii / 2.44
    lum[:, _INDEX["HeI_10833"]] = settings.hei_10830_to_halpha * l_halpha
    attenuation = 10.0 ** (-0.4 * calzetti_k(EMISSION_WAVELENGTHS)[None, :] * np.asarray(ebv_gas)[:, None])
    distance = np.asarray(luminosity_distance_cm, dtype=np.float64)[:, None]
    return lum * attenuation / (4.0 * np.pi * distance**2)


def catalogue_line_fluxes(fluxes: np.ndarray) -> dict[str, np.ndarray]:
    """The line fluxes recorded in a truth catalogue, erg/s/cm^2.

    Parameters
    ----------
    fluxes : numpy.ndarray, shape (N, 17)
        Output of :func:`line_fluxes`.

    Returns
    -------
    dict of str to numpy.ndarray, shape (N,)
        Halpha, Hbeta, [OIII] 5008, [OII] 3727+3730, [NII] 6585 and [SII] 6718+6733.
    """
    pick = lambda *names: sum(fluxes[:, _INDEX[n]] for n in names)  # noqa: E731
    return {
        "flux_halpha": pick("Halpha"),
        "flux_hbeta": pick("Hbeta"),
        "flux_oiii_5008": pick("OIII_5008"),
        "flux_oii_3727_3730": pick("OII_3727", "OII_3730"),
        "flux_nii_6585": pick("NII_6585"),
        "flux_sii_6718_6733": pick("SII_6718", "SII_6733"),
    }
