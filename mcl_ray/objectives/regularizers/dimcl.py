"""dimcl: DimCL's dimensional contrast (Nguyen et al., 2023), mixed into any method's loss.

Each projection dimension, seen across the batch, is a sample: dimension i of view 1 and dimension i of view
2 are positives, every other dimension a negative (NT-Xent over the 2D columns). With several workers the
projections are gathered first (with gradient), so the columns span the global batch and the term is the same
on every worker as on one process; columns are then centred per dimension (the official code batch-normalises
before the loss) and L2-normalised. The paper's mix is total = (1 - weight) * base + weight * L_dim with weight
0.1, temperature 0.1.
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
    """NT-Xent between the D columns of z1 [B, D] and z2 [B, D] (centred per column over the global batch).

    Every worker computes the term on the gathered batch; the gather sends each worker's rows the gradient of
    every worker's (identical) term, so DDP's average is exactly the one-process gradient."""
    from mcl_ray.objectives.distributed import gather_with_grad, is_distributed
    from mcl_ray.objectives.simclr import nt_xent_loss

    if is_distributed():
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)

    c1 = (z1 - z1.mean(dim=0, keepdim=True)).T
    c2 = (z2 - z2.mean(dim=0, keepdim=True)).T
    return nt_xent_loss(c1, c2, temperature)  # normalises each column; no groups: dimensions are not samples
