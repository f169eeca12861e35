"""simclr: NT-Xent between two views' projections, negatives from the (global) batch."""

from __future__ import annotations

from mcl_ray.objectives.declarations import METHODS, MethodOptions


@METHODS.register("simclr")
class SimCLROptions(MethodOptions):
    def build(self, encoder, *, temperature: float, gather: bool):
        from mcl_ray.objectives.simclr import SimCLR

        return SimCLR(encoder, temperature=temperature, gather=gather)
