"""simclr: NT-Xent between two views' projections, negatives from the (global) batch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mcl_ray.objectives.declarations import METHODS, MethodOptions


@METHODS.register("simclr")
class SimCLROptions(MethodOptions):
    anchors: Literal["all", "with_negatives"] = Field(
        "all", description="MCL stages: the loss averages over every anchor (all: an anchor whose group has no "
        "other sample in the batch adds a zero) or only over anchors that have a negative (with_negatives)")
    key_omits_at_default = ("anchors",)  # stage keys made before the option existed stay valid

    def build(self, encoder, *, temperature: float, gather: bool):
        from mcl_ray.objectives.simclr import SimCLR

        return SimCLR(encoder, temperature=temperature, gather=gather, anchors=self.anchors)
