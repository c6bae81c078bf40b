"""M-TOPnet: redshifts, stellar masses and SFRs with probabilistic outputs from galaxy spectra.

The package follows the data flow simulate -> store -> preprocess -> model -> results:
:mod:`mtopnet_core.grid` and :mod:`mtopnet_core.lines` hold the shared constants,
:mod:`mtopnet_core.simulate` makes the mock MOONS survey, :mod:`mtopnet_core.store` keeps data
sets, :mod:`mtopnet_core.fits_io` reads and writes ESO Phase 3 spectra.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
