"""Conventions shared across the package: flux unit, quality-mask bits, sky-mask threshold, success threshold.

A light module (no imports): the command line reads its defaults from here.
"""

from __future__ import annotations

__all__ = ["FLUX_UNIT", "FLUX_UNIT_STRING", "MASK_BITS", "SKY_MASK_THRESHOLD", "SPEED_OF_LIGHT_KMS",
           "SUCCESS_THRESHOLD"]

FLUX_UNIT: float = 1e-17
"""Stored fluxes and errors are in units of 1e-17 erg/s/cm^2/A."""

FLUX_UNIT_STRING: str = "1e-17 erg / (s cm2 Angstrom)"
"""The same unit, as astropy parses it."""

MASK_BITS: dict[str, int] = {
    "detector_edge": 1,  # first/last channels of a detector
    "telluric": 2,  # strong atmospheric absorption
    "no_coverage": 4,  # the input spectrum does not cover this channel
    "bad_value": 8,  # the input flux or error is not finite
    "flagged_input": 16,  # the input file's quality flags (QUAL) mark a pixel this channel is made from
}
"""Bits of the per-channel quality mask (0 = good channel)."""

SKY_MASK_THRESHOLD: float = 10.0**-4.8
"""Sky brightness above which the paper masks a channel (section 3.1), photons/s/cm^2/A/arcsec^2."""

SPEED_OF_LIGHT_KMS: float = 299792.458
"""Speed of light, km/s (exact)."""

SUCCESS_THRESHOLD: float = 0.01
"""The paper's |Delta z| of a successful redshift, unless a command or the page asks for another."""
