"""Shared fixtures: a small mock survey made once per test session, and the test tiers.

Tiers (markers; ``pytest -m "not slow and not browser and not multiprocess"`` is the unit tier):
``browser`` drives Chromium, ``multiprocess`` starts servers, workers or clusters, ``slow`` trains
or exports a network (any test using a trained fixture is marked here, automatically).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtopnet_core.simulate.population import draw_population
from mtopnet_core.simulate.settings import SimulationSettings
from mtopnet_core.simulate.spectra import SpectrumSimulator
from mtopnet_core.simulate.survey import simulate_survey

SMALL = SimulationSettings(chunk_size=16)


@pytest.fixture(scope="session")
def simulator() -> SpectrumSimulator:
    return SpectrumSimulator()


@pytest.fixture(scope="session")
def small_survey(tmp_path_factory):
    """A complete 40-spectrum data set (seed 7, chunks of 16, one worker)."""
    out = tmp_path_factory.mktemp("survey") / "s7"
    simulate_survey(out, 40, 7, SMALL, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_model(small_survey, tmp_path_factory):
    """A model folder with a narrow network trained for one epoch on ``small_survey``."""
    from mtopnet_core.model import ModelConfig
    from mtopnet_core.training import TrainConfig, train

    out = tmp_path_factory.mktemp("model") / "run"
    train(small_survey, out, TrainConfig(max_epochs=1, batch_size=8), ModelConfig(filters=(4, 8, 8, 8)), verbose=0)
    return out


@pytest.fixture(scope="session")
def small_results(small_survey, tiny_model, tmp_path_factory):
    """Results of ``tiny_model`` on ``small_survey``, with a UMAP map (what the app opens)."""
    from mtopnet_core.batch import predict_store
    from mtopnet_core.embedding import ensure_embedding_map
    from mtopnet_core.results import open_results

    out = tmp_path_factory.mktemp("results") / "small"
    predict_store(small_survey, out, tiny_model, workers=1, progress=False)
    ensure_embedding_map(open_results(out), seed=1)
    return out


@pytest.fixture(scope="session")
def population_20k() -> pd.DataFrame:
    return draw_population(20000, 123)


def one_galaxy(**changes) -> pd.DataFrame:
    """A single star-forming galaxy at z = 1.2 with chosen truth values changed."""
    row = draw_population(50, 3).query("galaxy_class == 'star-forming'").iloc[[0]].copy()
    row["z"] = 1.2
    for key, value in changes.items():
        row[key] = value
    return row.reset_index(drop=True)


@pytest.fixture
def galaxy():
    return one_galaxy


def h_band(array: np.ndarray) -> np.ndarray:
    from mtopnet_core import grid

    return array[..., grid.channel_slices()[-1]]


def damage_chunk(chunk, damage: str) -> None:
    """Damage a stored chunk file: ``"truncated"`` after 100 bytes, or ``"one byte flipped"`` in its middle."""
    data = bytearray(chunk.read_bytes())
    if damage == "truncated":
        del data[100:]
    else:
        data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))


TRAINED_FIXTURES = {"tiny_model", "small_results", "exported_tiny", "store_results", "trained_folder"}
"""Fixtures that train (or predict with) a network: a test using one is in the ``slow`` tier."""


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
