"""The UMAP map of the latent vectors, its warm-up, and umap-learn loaded quickly (`mtopnet_core.umap_import`)."""

from __future__ import annotations

import json
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
import json
import sys
import numpy as np
from numba.core.dispatcher import Dispatcher
import mtopnet_core.embedding as embedding
import mtopnet_core.umap_import as umap_import
{before}


def compilations():  # numba's cache hits and misses over umap-learn's kernels
    kernels = [kernel for name, module in list(sys.modules.items()) if name.startswith("umap.")
               for kernel in vars(module).values() if isinstance(kernel, Dispatcher)]
    return np.array([sum(sum(k.stats.cache_hits.values()) for k in kernels),
                     sum(sum(k.stats.cache_misses.values()) for k in kernels)])


umap_import.import_umap()
imported = compilations()
rng = np.random.default_rng(0)
vectors = (np.repeat(rng.normal(size=(4, 16)) * 4, 60, axis=0) + rng.normal(size=(240, 16))).astype(np.float32)
xy = embedding.fit_embedding_map(vectors, seed=3)
hits, misses = (compilations() - imported).tolist()
umap_ = sys.modules["umap.umap_"]
seen = dict(hits=hits, misses=misses, nndescent=umap_.NNDescent.__module__, pynndescent="pynndescent" in sys.modules,
            mapped=bool(np.isfinite(xy).all() and np.ptp(xy, axis=0).min() > 1),
            an_nndescent=isinstance(object(), umap_.NNDescent))
{after}
print(json.dumps(seen))
"""


def _fit_in_a_new_process(numba_cache: Path, before: str = "", after: str = "") -> dict:
    """Fit a map in a new interpreter: numba's cache hits and misses for umap-learn's kernels during
    the fit, the module of the NNDescent umap-learn holds, whether pynndescent is loaded, whether the
    map is one, and what ``after`` adds to ``seen``."""
    code = _FIT_IN_A_NEW_PROCESS.format(before=before, after=after)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"NUMBA_CACHE_DIR": str(numba_cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_a_new_process_maps_without_pynndescent_and_with_umaps_kernels_from_numbas_cache(tmp_path):
    # pynndescent's import compiled ~40 kernels for NN-descent, which is not used (13.6 s on a fresh
    # install), and umap-learn compiled its own in every new process (4.5 s): the app's first map waited
    seen = _fit_in_a_new_process(tmp_path)
    assert seen["nndescent"] == "mtopnet_core.umap_import" and not seen["pynndescent"] and seen["mapped"]
    assert not seen["an_nndescent"]
    assert seen["hits"] == 0 and seen["misses"] > 0  # compiled into the empty cache
    seen = _fit_in_a_new_process(tmp_path)
    assert seen["hits"] > 0 and seen["misses"] == 0  # loaded, nothing compiled


def test_umaps_own_neighbour_search_still_gets_pynndescent_after_a_map_made_here(tmp_path_factory):
    # umap-learn used directly in the same process (a notebook): its NN-descent and pynndescent's
    # metrics are loaded when it asks for them (NNDescent replaced: building a real one compiles ~30 s)
    after = """
import pynndescent
class Built:
    def __init__(self, *args, **kwargs):
        self.args = args
pynndescent.NNDescent = Built
built = umap_.NNDescent("data", n_neighbors=5)
seen.update(built=type(built).__name__, args=list(built.args), an_nndescent=isinstance(built, umap_.NNDescent),
            sqeuclidean="sqeuclidean" in umap_.pynn_named_distances, l2="l2" in umap_.pynn_sparse_named_distances)
"""
    seen = _fit_in_a_new_process(tmp_path_factory.getbasetemp() / "numba-cache", after=after)
    assert seen["nndescent"] == "mtopnet_core.umap_import" and seen["built"] == "Built" and seen["args"] == ["data"]
    assert seen["an_nndescent"] and seen["sqeuclidean"] and seen["l2"]  # pynndescent-only metrics


@pytest.mark.parametrize("before", [
    # a umap-learn release that takes more from pynndescent than the stand-ins give
    "umap_import._pynndescent_stand_ins = lambda: {'pynndescent': type(sys)('pynndescent')}",
    "import pynndescent",  # loaded already: the real one
])
def test_umap_takes_the_real_pynndescent_where_the_stand_ins_would_not_do(tmp_path_factory, before):
    numba_cache = tmp_path_factory.getbasetemp() / "numba-cache"  # one for these tests: compiled once
    seen = _fit_in_a_new_process(numba_cache, before)
    assert seen["nndescent"].startswith("pynndescent.") and seen["pynndescent"] and seen["mapped"]
