"""Build the per-channel night-sky model shipped in ``assets/``.

Ingredients (public files inside the PypeIt wheel, BSD-3-Clause; PypeIt itself is not installed):

- OH emission lines with relative amplitudes, vacuum wavelengths:
  ``pypeit/data/arc_lines/lists/OH_GMOS_lines.dat`` (below 8000 A) and
  ``pypeit/data/arc_lines/lists/OH_XSHOOTER_lines.dat`` (8016-24 993 A);
- atmospheric transmission at airmass 1.0 and 1 mm of water vapour, 0.9-5.6 micron:
  ``pypeit/data/extinction/atm_trans_am1.0.dat``;
- below 0.9 micron, where that file stops, the Mauna Kea extinction curve of Buton et al. (2013),
  which includes the O2 A and B bands: ``pypeit/data/extinction/mkoextinct.dat``.

The lines are convolved with each channel's instrument profile and integrated over the pixels;
per channel, the line amplitudes are scaled so that line + inter-line continuum match a typical
Paranal dark sky (assumed, see ``SKY_BANDS``). Transmission is scaled to airmass 1.2 as
T(1.2) = T(1.0)^1.2. Run from the repository root::

    python scripts/build_sky_model.py --out assets/sky_moons_lr_v1.npz

It calls ``pip download --no-deps pypeit==2.0.1`` unless ``--pypeit-wheel`` names a local copy.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy.special import ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mtopnet_core import grid  # noqa: E402

logger = logging.getLogger("build_sky_model")

PYPEIT_VERSION = "2.0.1"
AIRMASS = 1.2
H_PLANCK = 6.62607015e-27  # erg s

# Per channel: band window used for the normalisation (A), total sky surface brightness there
# (Vega mag/arcsec^2, Paranal dark sky: I ~ 19.9, J ~ 16.5, H ~ 14.4), Vega->AB offset
# (Blanton & Roweis 2007) and the inter-line continuum (AB mag/arcsec^2). All assumed.
SKY_BANDS = {
    "RI": {"window": (7000.0, 9000.0), "vega_mag": 19.9, "ab_minus_vega": 0.45, "continuum_ab": 21.0},
    "YJ": {"window": (11700.0, 13300.0), "vega_mag": 16.5, "ab_minus_vega": 0.91, "continuum_ab": 20.0},
    "H": {"window": (14900.0, 17800.0), "vega_mag": 14.4, "ab_minus_vega": 1.39, "continuum_ab": 19.5},
}


def photon_density_ab(mag_ab: float, wavelength: np.ndarray) -> np.ndarray:
    """Photon flux density of a source of constant AB magnitude, photons/s/cm^2/A."""
    f_nu = 10.0 ** (-0.4 * (mag_ab + 48.6))  # erg/s/cm^2/Hz
    return f_nu / (H_PLANCK * wavelength)


def read_line_list(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Wavelengths (A, vacuum) and relative amplitudes from a PypeIt line-list table."""
    waves, amps = [], []
    for row in path.read_text().splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] == "wave" or row.startswith("#"):
            continue
        waves.append(float(cells[0]))
        amps.append(float(cells[4]))
    return np.array(waves), np.array(amps)


def extract(wheel: Path, workdir: Path) -> Path:
    """Unzip the four data files from the PypeIt wheel into ``workdir``."""
    members = [
        "pypeit/data/arc_lines/lists/OH_GMOS_lines.dat",
        "pypeit/data/arc_lines/lists/OH_XSHOOTER_lines.dat",
        "pypeit/data/extinction/atm_trans_am1.0.dat",
        "pypeit/data/extinction/mkoextinct.dat",
    ]
    with zipfile.ZipFile(wheel) as archive:
        for member in members:
            archive.extract(member, workdir)
    return workdir / "pypeit" / "data"


def binned_lines(line_wave: np.ndarray, line_flux: np.ndarray) -> np.ndarray:
    """Mean flux density per MOONS pixel of Gaussian lines (instrument profile, erf-integrated).

    ``line_flux`` is each line's integrated flux; the result has units of flux per Angstrom.
    """
    lower, upper = grid.pixel_edges()
    sigma = grid.wavelength_grid() / (grid.resolving_power() * 2.3548)
    result = np.zeros(grid.N_CHANNELS)
    centres = grid.wavelength_grid()
    for wave, flux in zip(line_wave, line_flux, strict=True):
        near = np.abs(centres - wave) < 8 * sigma
        if not near.any():
            continue
        s = sigma[near]
        fraction = ndtr((upper[near] - wave) / s) - ndtr((lower[near] - wave) / s)
        result[near] += flux * fraction / (upper[near] - lower[near])
    return result


def build(out: Path, wheel: Path | None) -> None:
    """Make the sky model and write it to ``out`` (``.npz``)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", f"pypeit=={PYPEIT_VERSION}",
                 "-d", str(tmpdir), "-q"],
                check=True,
            )
            wheel = next(tmpdir.glob("pypeit-*.whl"))
        data = extract(wheel, tmpdir)
        gmos_w, gmos_a = read_line_list(data / "arc_lines/lists/OH_GMOS_lines.dat")
        xsh_w, xsh_a = read_line_list(data / "arc_lines/lists/OH_XSHOOTER_lines.dat")
        atm = np.loadtxt(data / "extinction/atm_trans_am1.0.dat")
        mko = np.loadtxt(data / "extinction/mkoextinct.dat")

    keep = gmos_w < 8000.0  # the X-shooter list takes over from 8016 A
    oh_wave = np.concatenate([gmos_w[keep], xsh_w])
    oh_amp = np.concatenate([gmos_a[keep], xsh_a])
    wave = grid.wavelength_grid()
    channel = grid.channel_index()
    unit_lines = binned_lines(oh_wave, oh_amp)

    sky = np.empty(grid.N_CHANNELS)
    for index, ch in enumerate(grid.CHANNELS):
        band = SKY_BANDS[ch.name]
        in_channel = channel == index
        continuum = photon_density_ab(band["continuum_ab"], wave)
        lo, hi = band["window"]
        window = in_channel & (wave >= lo) & (wave <= hi)
        target = photon_density_ab(band["vega_mag"] + band["ab_minus_vega"], wave[window]).mean()
        line_mean = unit_lines[window].mean()
        scale = (target - continuum[window].mean()) / line_mean
        sky[in_channel] = continuum[in_channel] + scale * unit_lines[in_channel]
        logger.info("%s: OH scale %.3e, band-mean sky %.3e photons/s/cm^2/A/arcsec^2",
                    ch.name, scale, target)

    # Transmission: PypeIt's curve above 0.9 micron; MKO extinction (mag/airmass) below.
    t_atm = np.interp(wave / 1e4, atm[:, 0], atm[:, 1]) ** AIRMASS
    k_mko = np.interp(wave, mko[:, 0], mko[:, 1])
    blue = wave < atm[0, 0] * 1e4
    t_atm[blue] = 10.0 ** (-0.4 * k_mko[blue] * AIRMASS)

    masked = np.mean(sky > 10.0 ** -4.8)
    logger.info("channels above 10^-4.8: %.1f%%", 100 * masked)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        wavelength=wave,
        sky=sky.astype(np.float32),
        transmission=t_atm.astype(np.float32),
        airmass=AIRMASS,
        grid_fingerprint=np.array(grid.grid_fingerprint()),
        provenance=np.array(
            f"PypeIt {PYPEIT_VERSION} wheel data: OH_GMOS_lines.dat (<8000 A) + OH_XSHOOTER_lines.dat, "
            "atm_trans_am1.0.dat (>=9000 A), mkoextinct.dat (Buton et al. 2013, <9000 A); "
            f"lines convolved to the MOONS LR resolution and scaled per channel to {SKY_BANDS}; "
            f"transmission at airmass {AIRMASS}"
        ),
    )
    logger.info("wrote %s", out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("assets/sky_moons_lr_v1.npz"))
    parser.add_argument("--pypeit-wheel", type=Path, default=None,
                        help="local PypeIt wheel to read instead of downloading it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.out, args.pypeit_wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
