"""dimcl: DimCL's dimensional contrast (Nguyen et al., 2023), mixed into any method's loss.

Each projection dimension, seen across the batch, is a sample: dimension i of view 1 and dimension i of view
2 are positives, every other dimension a negative (NT-Xent over the 2D columns). Columns are centred per
dimension over this worker's batch first (the official code batch-normalises before the loss, per GPU) and
L2-normalised. The paper's mix is total = (1 - weight) * base + weight * L_dim with weight 0.1, temperature 0.1.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mcl_ray.objectives.declarations import REGULARIZERS, RegularizerOptions


@REGULARIZERS.register("dimcl")
class DimCL(RegularizerOptions):
    name: str = "dimcl"
    weight: float = Field(0.1, gt=0.0, lt=1.0)
    temperature: float = Field(0.1, gt=0.0, le=100.0, description="temperature of the dimensional NT-Xent")

    def loss(self, outputs: dict[str, Any], groups: Any) -> Any:
        from mcl_ray.errors import ConfigError

        views = outputs.get("projections")
        if not views or len(views) != 2:
            raise ConfigError("objective.regularizers: dimcl needs a method that exposes two views' projections")
        return dimcl_loss(*views, self.temperature)


def dimcl_loss(z1, z2, temperature: float):
    """NT-Xent between the D columns of z1 [B, D] and z2 [B, D] (centred per column over the batch)."""
    from mcl_ray.objectives.simclr import nt_xent_loss

    c1 = (z1 - z1.mean(dim=0, keepdim=True)).T
    c2 = (z2 - z2.mean(dim=0, keepdim=True)).T
    return nt_xent_loss(c1, c2, temperature)  # normalises each column; no groups: dimensions are not samples
