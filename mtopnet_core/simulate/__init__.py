"""The mock MOONS survey (``shared/design/simulator.md``): population, spectra, survey runner."""

from mtopnet_core.simulate.population import draw_population
from mtopnet_core.simulate.settings import SIMULATOR_VERSION, SimulationSettings
from mtopnet_core.simulate.spectra import SimulatedBatch, SpectrumSimulator

__all__ = ["draw_population", "SimulationSettings", "SIMULATOR_VERSION", "SpectrumSimulator",
           "SimulatedBatch"]
