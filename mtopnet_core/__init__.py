"""M-TOPnet: redshifts, stellar masses and SFRs with probabilistic outputs from galaxy spectra.

The data flow, and the module of each step::

    simulate/ (mock MOONS survey) --> store (Zarr + Parquet data sets) --+
    fits_io (ESO Phase 3, SDSS, pixel tables) ---------------------------+--> spectra.Spectra
                                                                         |
    preprocessing (mask, continuum, normalise) --> model / tasks / training (Keras)
        --> export + runtime (ONNX Runtime) --> inference.predict --> results (folder)
        --> evaluation, evaluation_report, calibration, embedding, saliency --> the app

Shared constants live in :mod:`~mtopnet_core.grid` (wavelengths, redshift bins),
:mod:`~mtopnet_core.lines` (Table 1), :mod:`~mtopnet_core.tasks` (the four tasks) and
:mod:`~mtopnet_core.conventions` (units, mask bits, the success threshold); errors in
:mod:`~mtopnet_core.errors`, JSON and atomic writes in :mod:`~mtopnet_core.jsonio`, the chunks in
flight on a pool and the progress bars in :mod:`~mtopnet_core.parallel`.

The public API, re-exported here (imported on first use, so ``import mtopnet_core`` stays light)::

    import mtopnet_core as mt
    model = mt.load_trained_model(mt.shipped_model_dir())
    predictions = mt.predict(model, mt.open_dataset("survey").spectra(slice(0, 256)))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Spectra": "mtopnet_core.spectra",
    "open_dataset": "mtopnet_core.store",
    "read_fits_batch": "mtopnet_core.fits_io",
    "load_trained_model": "mtopnet_core.inference",
    "predict": "mtopnet_core.inference",
    "shipped_model_dir": "mtopnet_core.assets",
    "load_sky_model": "mtopnet_core.simulate.sky",
    "TASKS": "mtopnet_core.tasks",
    "MtopnetError": "mtopnet_core.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    # PEP 562: the API's modules load on first use (the network's runtime takes seconds to import)
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'mtopnet_core' has no attribute {name!r}")
