"""moco: MoCo v2, negatives from a queue of momentum-encoder keys (each keeps its MCL group)."""

from __future__ import annotations

from pydantic import Field

from mcl_ray.objectives.declarations import METHODS, MethodOptions


@METHODS.register("moco")
class MoCoOptions(MethodOptions):
    momentum: float = Field(0.99, ge=0.0, lt=1.0, description="momentum-encoder EMA")
    queue_size: int = Field(4096, ge=1, description="queue length")
    per_group_queue: bool = Field(True, description="MCL stages: one ring of queue_size // groups keys per group, "
                                                     "so every anchor keeps same-group negatives (false: one shared queue)")

    def build(self, encoder, *, temperature: float, gather: bool):
        from mcl_ray.objectives.moco import MoCo

        return MoCo(encoder, temperature=temperature, gather=gather, momentum=self.momentum, queue_size=self.queue_size,
                    per_group_queue=self.per_group_queue)
