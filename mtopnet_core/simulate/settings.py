"""Settings of the mock MOONS survey: every number we could not pin to a published source.

Each field marked *(assumed)* is a reasonable value chosen for this project (see
``shared/design/simulator.md``); change it here, nowhere else. The settings are written into every
data set, so a data set can always be regenerated bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["SimulationSettings", "SIMULATOR_VERSION"]

SIMULATOR_VERSION = "2.0.0"
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

    # --- population (paper, section 2 and Fig. 1) ---
    population: str = "lightcone"
    """How redshift, mass and class are drawn. ``"lightcone"`` (default since simulator 2.0.0):
    galaxies per comoving volume from the blue and red stellar mass functions (Peng et al.
    2010), so that faint high-redshift galaxies and massive quiescent ones are as common as a
    mass-selected survey finds them. ``"exponential"``: the simulator 1.x recipe, p(z) ~
    exp(-(z - z_min) / z_scale), one Schechter mass function and a logistic quiescent
    fraction; far easier than the paper's mocks (median H-alpha flux 10^-16.3 erg/s/cm^2)."""
    z_min: float = 0.7
    z_max: float = 3.0
    log_mstar_min: float = 8.0
    log_mstar_max: float = 11.5
    smf_log_mchar: float = 10.64
    """Characteristic mass of both mass functions (Peng et al. 2010, blue galaxies, Chabrier)."""
    smf_alpha_blue: float = -1.4
    """Low-mass slope of the star-forming mass function (Peng et al. 2010); mass quenching makes
    the red one's slope alpha + 1 (Peng et al. 2010, eq. 16)."""
    smf_blue_phi_evolution: float = -1.0
    """phi*_blue ~ (1 + z)^this: the slow decline of the blue normalisation from z ~ 1 to 3
    (Ilbert et al. 2013 trend; assumed exponent)."""
    red_to_blue_at_z1: float = 1.0
    red_to_blue_evolution: float = -2.1
    """phi*_red / phi*_blue = r1 ((1 + z) / 2)^this: half of the galaxies at M_char quiescent at
    z = 1 and about 30% at z = 2 (Muzzin et al. 2013 quiescent fractions; assumed form)."""
    z_scale: float = 0.8
    """``"exponential"`` population only: p(z) ~ exp(-(z - z_min) / z_scale) (assumed)."""
    schechter_log_mchar: float = 10.9
    schechter_alpha: float = -1.4
    """``"exponential"`` population only: single-Schechter mass function (assumed)."""
    quiescent_log_m0: float = 10.4
    quiescent_dlogm_dz: float = 0.3
    quiescent_width: float = 0.3
    """``"exponential"`` population only: quiescent fraction logistic in log M* (assumed)."""
    starburst_fraction: float = 0.03
    starburst_boost_dex: float = 1.0
    """Starbursts: this fraction of star-forming galaxies, SFR above the MS (Schreiber+2015)."""
    ms_scatter_dex: float = 0.3
    """Scatter of the main sequence: Schreiber et al. (2015) for the ``"lightcone"`` population,
    as the paper's EGG; Speagle et al. (2014) for ``"exponential"``."""
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
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``.

        Settings written before the ``population`` field existed (simulator 1.x) describe the
        ``"exponential"`` population, and are read as such.
        """
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        fixed.setdefault("population", "exponential")
        return cls(**fixed)
