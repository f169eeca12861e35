"""A stage as plain specs, one per layer: what its data, model, objective, training, clustering and
evaluation are. The trainer, the clustering, the evaluation and the stage keys read these, never the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcl_ray.data.augment_spec import AugmentSpec
from mcl_ray.data.spec import DataSpec
from mcl_ray.eval.spec import EvalSpec
from mcl_ray.mcl.spec import ClusteringSpec
from mcl_ray.models.spec import ModelSpec
from mcl_ray.objectives.declarations import ObjectiveSpec
from mcl_ray.train.spec import TrainSpec


@dataclass(frozen=True)
class StageSpec:
    index: int  # 0-based
    seed: int  # this stage's training seed (also its k-means seed)
    data: DataSpec
    augment: AugmentSpec
    model: ModelSpec
    objective: ObjectiveSpec
    train: TrainSpec
    clustering: ClusteringSpec | None  # None after the last stage
    eval: EvalSpec
    init: str = "fresh"  # fresh | pretrained | previous
    integrate: str = "backbone"  # the representation concatenated across stages
    sampling: str = "group_batches"  # or random_batches (batches ignore groups; the loss masks by group)
    online_knn_samples: int = 2000

    def identity(self) -> dict[str, Any]:
        """Everything the stage's trained weights depend on (hashed into its key)."""
        return {
            "stage": self.index,
            "seed": self.seed,
            "data": self.data.identity(),
            "augment": self.augment.__dict__,
            "model": self.model.identity(),
            "objective": self.objective.identity(),
            "train": self.train.identity(),
            "init": self.init,
            # stage 1 has no groups, so both policies draw the same ordinary batches: one key, trained once
            "sampling": self.sampling if self.index > 0 else "group_batches",
        }
