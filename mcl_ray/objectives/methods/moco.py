"""moco: MoCo v2, negatives from a queue of momentum-encoder keys (each keeps its MCL group)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mcl_ray.objectives.declarations import METHODS, MethodOptions


@METHODS.register("moco")
class MoCoOptions(MethodOptions):
    key_omits_at_default: ClassVar[tuple[str, ...]] = ("symmetric",)  # stage keys from before the option stay valid
    momentum: float = Field(0.99, ge=0.0, lt=1.0, description="momentum-encoder EMA")
    queue_size: int = Field(4096, ge=1, description="queue length")
    per_group_queue: bool = Field(True, description="MCL stages: one ring of queue_size // groups keys per group, "
                                                     "so every anchor keeps same-group negatives (false: one shared queue)")
    symmetric: bool = Field(True, description="both views as queries (MoCo v3 / solo-learn's MoCo v2+); false: MoCo "
                                              "v2 as published, view 1 the query and view 2 the key, about half "
                                              "the compute per step (no view-2 projections for dimcl)")

    def outputs(self) -> frozenset[str]:
        return frozenset({"projections", "logits"} if self.symmetric else {"logits"})

    def build(self, encoder, *, temperature: float, gather: bool):
        from mcl_ray.objectives.moco import MoCo

        return MoCo(encoder, temperature=temperature, gather=gather, momentum=self.momentum, queue_size=self.queue_size,
                    per_group_queue=self.per_group_queue, symmetric=self.symmetric)
