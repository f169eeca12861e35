"""How the embeddings after a stage are clustered (k-means) to form the next stage's groups."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusteringSpec:
    k: int
    on: str = "projector"  # which representation: backbone, projector; image-text models also text or joint
    iters: int = 20
    max_points: int | None = 1_000_000  # k-means trains on a seeded sample of at most this many rows
    gpu: bool | None = None  # None: faiss GPU when available
    seed: int = 0
    min_group_size: int = 0  # groups smaller than this fold into a sibling (mcl/small_groups.py); 0: off

    def key_fields(self) -> dict:
        """What the clustering's key hashes: every field, leaving out options at their off value so keys made
        before the option existed stay valid."""
        fields = dict(self.__dict__)
        if fields["min_group_size"] <= 1:
            del fields["min_group_size"]
        return fields

    @property
    def views(self) -> tuple[str, ...]:
        """The embeddings clustered separately; 'joint' clusters image and text embeddings with K each and pairs
        the labels (K x K groups, as CLIP-MoE builds 9 from 3 x 3)."""
        return VIEWS[self.on]

    @property
    def groups_per_step(self) -> int:
        """Labels one clustering step can give (K, or K^2 when joint)."""
        return self.k ** len(self.views)


VIEWS = {"backbone": ("backbone",), "projector": ("projector",), "text": ("text",), "joint": ("backbone", "text")}
