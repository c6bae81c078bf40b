"""The UMAP map of the latent vectors and its warm-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtopnet_core.embedding import fit_embedding_map, warm_up_umap


def _clustered_vectors(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16)) * 4
    return (np.repeat(centres, 60, axis=0) + rng.normal(size=(240, 16))).astype(np.float32)


def test_the_warm_up_leaves_the_map_as_it_was():
    vectors = _clustered_vectors(0)
    before = fit_embedding_map(vectors, seed=3)
    thread = warm_up_umap()
    thread.join(120)
    assert not thread.is_alive() and warm_up_umap() is thread  # once per process
    after = fit_embedding_map(vectors, seed=3)
    np.testing.assert_array_equal(before, after)
    # the map follows its input: another set of vectors, another map
    assert not np.allclose(fit_embedding_map(_clustered_vectors(1), seed=3), before)
    # unprocessed spectra (NaN vectors) stay off the map
    vectors[5] = np.nan
    assert np.isnan(fit_embedding_map(vectors, seed=3)[5]).all()



_FIT_IN_A_NEW_PROCESS = """
import sys
import numpy as np
from numba.core.dispatcher import Dispatcher
import mtopnet_core.embedding as embedding
{before}


def compilations():  # numba's cache hits and misses over umap-learn's kernels
    kernels = [kernel for name, module in list(sys.modules.items()) if name.startswith("umap.")
               for kernel in vars(module).values() if isinstance(kernel, Dispatcher)]
    return np.array([sum(sum(k.stats.cache_hits.values()) for k in kernels),
                     sum(sum(k.stats.cache_misses.values()) for k in kernels)])


embedding._import_umap()
imported = compilations()
rng = np.random.default_rng(0)
vectors = (np.repeat(rng.normal(size=(4, 16)) * 4, 60, axis=0) + rng.normal(size=(240, 16))).astype(np.float32)
xy = embedding.fit_embedding_map(vectors, seed=3)
print(*(compilations() - imported), sys.modules["umap.umap_"].NNDescent.__module__, "pynndescent" in sys.modules,
      np.isfinite(xy).all() and np.ptp(xy, axis=0).min() > 1)
"""


def _fit_in_a_new_process(numba_cache: Path, before: str = "") -> tuple[int, int, str, str, str]:
    """Fit a map in a new interpreter; numba's cache hits and misses for umap-learn's kernels during
    the fit, the module of the NNDescent umap-learn holds, whether pynndescent is loaded, whether the
    map is one."""
    done = subprocess.run([sys.executable, "-c", _FIT_IN_A_NEW_PROCESS.format(before=before)], capture_output=True,
                          text=True, timeout=600, env=os.environ | {"NUMBA_CACHE_DIR": str(numba_cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    hits, misses, nndescent, pynndescent, mapped = done.stdout.split()
    return int(hits), int(misses), nndescent, pynndescent, mapped


def test_a_new_process_maps_without_pynndescent_and_with_umaps_kernels_from_numbas_cache(tmp_path):
    # pynndescent's import compiled ~40 kernels for NN-descent, which is not used (13.6 s on a fresh
    # install), and umap-learn compiled its own in every new process (4.5 s): the app's first map waited
    hits, misses, nndescent, pynndescent, mapped = _fit_in_a_new_process(tmp_path)
    assert (nndescent, pynndescent, mapped) == ("mtopnet_core.embedding", "False", "True")
    assert hits == 0 and misses > 0  # compiled into the empty cache
    hits, misses, *_ = _fit_in_a_new_process(tmp_path)
    assert hits > 0 and misses == 0  # loaded, nothing compiled


@pytest.mark.parametrize("before", [
    # a umap-learn release that takes more from pynndescent than the stand-ins give
    "embedding._pynndescent_stand_ins = lambda: {'pynndescent': type(sys)('pynndescent')}",
    "import pynndescent",  # loaded already: the real one
])
def test_umap_takes_the_real_pynndescent_where_the_stand_ins_would_not_do(tmp_path_factory, before):
    numba_cache = tmp_path_factory.getbasetemp() / "numba-cache"  # one for both: compiled once
    *_, nndescent, pynndescent, mapped = _fit_in_a_new_process(numba_cache, before)
    assert nndescent.startswith("pynndescent.") and (pynndescent, mapped) == ("True", "True")

