"""Cross-stage integration: concatenation of per-stage embeddings, L2-normalised."""

from __future__ import annotations

import numpy as np
import pytest

from mcl_ray.errors import DataError
from mcl_ray.mcl.integration import integrate


def test_concatenates_normalised_stages():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)) * 100, rng.normal(size=(5, 4))
    out = integrate([a, b])
    assert out.shape == (5, 7)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    # each stage gets equal weight whatever its scale: both halves have norm 1/sqrt(2)
    np.testing.assert_allclose(np.linalg.norm(out[:, :3], axis=1), 2**-0.5, rtol=1e-5)
    # cosine similarity of the integrated representation = mean of per-stage cosines
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(out @ out.T, (an @ an.T + bn @ bn.T) / 2, atol=1e-5)


def test_mismatched_rows():
    with pytest.raises(DataError, match="different numbers"):
        integrate([np.ones((3, 2)), np.ones((4, 2))])
