"""Settings of the mock MOONS survey: every number we could not pin to a published source.

Each field marked *(assumed)* is a reasonable value chosen for this project (see
``shared/design/simulator.md``); change it here, nowhere else. The settings are written into every
data set, so a data set can always be regenerated bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["SimulationSettings", "SIMULATOR_VERSION"]

SIMULATOR_VERSION = "1.0.0"
"""Bumped whenever a change alters the spectra produced for a given seed."""


@dataclass(frozen=True)
class SimulationSettings:
    """All tunable numbers of the mock survey.

    Attributes are grouped by what they describe; units are in the names or comments.
    """

    # --- cosmology (flat LCDM without radiation, as astropy's FlatLambdaCDM) ---
    h0: float = 70.0
    """Hubble constant, km/s/Mpc."""
    omega_m: float = 0.3
    """Matter density parameter (flat LCDM)."""

    # --- population (paper, Fig. 1) ---
    z_min: float = 0.7
    z_max: float = 3.0
    z_scale: float = 0.8
    """p(z) ~ exp(-(z - z_min) / z_scale) (assumed)."""
    log_mstar_min: float = 8.0
    log_mstar_max: float = 11.5
    schechter_log_mchar: float = 10.9
    """Characteristic mass of the single-Schechter mass function (assumed, after Ilbert+2013)."""
    schechter_alpha: float = -1.4
    """Low-mass slope of the mass function (assumed, after Ilbert+2013)."""
    quiescent_log_m0: float = 10.4
    quiescent_dlogm_dz: float = 0.3
    quiescent_width: float = 0.3
    """Quiescent fraction: logistic in log M* centred on m0 + dm/dz * z (assumed)."""
    starburst_fraction: float = 0.03
    starburst_boost_dex: float = 1.0
    """Starbursts: this fraction of star-forming galaxies, SFR above the MS (Schreiber+2015)."""
    ms_scatter_dex: float = 0.3
    """Scatter of the Speagle+2014 main sequence."""
    quiescent_offset_dex: tuple[float, float] = (0.8, 1.5)
    """Quiescent galaxies lie this far below the main sequence (uniform)."""
    oh_dz: float = -0.1
    """Change of 12+log(O/H) per unit redshift at fixed mass (assumed)."""
    oh_scatter_dex: float = 0.1
    aha_scatter_mag: float = 0.3
    """Scatter of A(Halpha) about Garn & Best (2010)."""
    quiescent_ebv_star_max: float = 0.15
    """Quiescent galaxies: stellar E(B-V) uniform in [0, this] (assumed)."""
    starburst_extra_aha_mag: float = 0.5
    """Extra Halpha attenuation of starbursts (assumed)."""
    f_star_z0: float = 0.44
    f_star_max: float = 0.9
    f_star_slope: float = 0.23
    """E(B-V)_star / E(B-V)_gas = min(f0 + slope * z, max) (Pannella+2015 trend, assumed shape)."""
    size_scatter_dex: tuple[float, float] = (0.16, 0.10)
    """Scatter of the van der Wel+2014 size-mass relations (star-forming, quiescent)."""
    mag_h_limit: float = 25.0
    log_mstar_limit: float = 9.0
    """MOONRISE-like selection: m_H < limit or log M* > limit."""
    exposure_hours: tuple[float, ...] = (2.0, 4.0, 8.0)
    exposure_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Exposure time per object, drawn with these relative weights (equal thirds by default)."""

    # --- emission lines ---
    sigma_gas_kms: tuple[float, float, float, float] = (80.0, 0.25, 40.0, 200.0)
    """sigma_gas = a * (M*/1e10)^b, clipped to [lo, hi] km/s (Bezanson+2018 trend, assumed)."""
    sigma_star_kms: tuple[float, float, float, float] = (120.0, 0.28, 50.0, 300.0)
    """Stellar velocity dispersion, same form (assumed)."""
    oiii_hbeta_offset_dex_per_z: float = 0.07
    """Raise of [OIII]/Hbeta at fixed metallicity per unit z (Shapley+2015 direction, assumed)."""
    siii_9533_to_halpha: float = 0.10
    hei_10830_to_halpha: float = 0.04
    """Line ratios to Halpha (assumed)."""

    # --- instrument and sky (MOONS LR, VLT) ---
    telescope_area_cm2: float = 4.93e5
    fibre_diameter_arcsec: float = 1.2
    seeing_fwhm_arcsec: float = 0.8
    sub_exposure_s: float = 300.0
    read_noise_e: float = 3.0
    """Per detector pixel per read (assumed)."""
    dark_e_per_s: float = 0.01
    """Per detector pixel (assumed)."""
    pixels_per_channel: int = 4
    """Detector pixels summed into one spectral channel (assumed)."""
    detector_edge_pixels: int = 5
    """Channels flagged at both ends of each detector (assumed)."""
    telluric_flag_below: float = 0.3
    """Channels whose atmospheric transmission is below this are flagged."""

    # --- store ---
    chunk_size: int = 256
    """Spectra per stored chunk (one unit of parallel work and of resumption)."""

    extra: dict = field(default_factory=dict)
    """Free-form notes recorded with the data set."""

    def to_dict(self) -> dict:
        """JSON-serialisable copy of the settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SimulationSettings:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fixed)
