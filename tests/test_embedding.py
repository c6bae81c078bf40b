"""The UMAP map of the latent vectors and its warm-up."""

from __future__ import annotations

import numpy as np

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
