"""How a representation is scored: kNN settings, and whether (and how long) a linear probe trains."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalSpec:
    knn_k: int = 20
    knn_temperature: float = 0.1
    linear: bool = True
    linear_epochs: int = 100
    seed: int = 0  # the linear probe's initialisation and shuffling
    mmvp: str | None = None  # image-text models: an MMVP_VLM folder, or "trifeature" (generated)
    mmvp_pairs: int = 50  # pairs per attribute of the generated benchmark
    retrieval_samples: int = 1000  # held-out image-caption pairs for retrieval R@1
