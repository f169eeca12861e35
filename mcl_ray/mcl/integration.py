"""Cross-stage representation integration: concatenate every stage's embedding, then L2-normalise.

Each stage's embedding is L2-normalised first (as CLIP features are in the official MMVP evaluation), so every
stage carries equal weight whatever its feature scale; the concatenation is normalised once more.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mcl_ray.errors import DataError


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def integrate(stage_embeddings: Sequence[np.ndarray], *, normalize_each: bool = True) -> np.ndarray:
    """[N, d_1], ..., [N, d_s] -> [N, d_1 + ... + d_s], unit rows."""
    if not stage_embeddings:
        raise DataError("integrate: no stage embeddings given")
    rows = {len(e) for e in stage_embeddings}
    if len(rows) != 1:
        raise DataError(f"integrate: stages embed different numbers of samples: {sorted(rows)}")
    parts = [l2_normalize(e) if normalize_each else np.asarray(e, np.float32) for e in stage_embeddings]
    return l2_normalize(np.concatenate(parts, axis=1))
