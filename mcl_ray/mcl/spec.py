"""How the embeddings after a stage are clustered (k-means) to form the next stage's groups."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusteringSpec:
    k: int
    on: str = "projector"  # which representation: backbone or projector
    iters: int = 20
    max_points: int | None = 1_000_000  # k-means trains on a seeded sample of at most this many rows
    gpu: bool | None = None  # None: faiss GPU when available
    seed: int = 0
