"""What a method or a regulariser declares about itself, without importing torch.

A method's options class (registered in `objectives/methods/<name>.py`) validates its own options and says
whether the method uses negatives (only then do MCL's groups change anything) and which representations
it exposes for clustering and integration; `build()` imports the torch implementation only when a stage
is trained. A regulariser is one file in `objectives/regularizers/`: its options, and its loss computed from
the method's outputs (torch imported inside). Both registries list their entries from file names, so
`mcl-ray validate` checks names and options in a fraction of a second.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mcl_ray.registry import Registry


class MethodOptions(BaseModel):
    """Options of one contrastive method (beyond the shared name, temperature and gather)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    uses_negatives: ClassVar[bool] = True
    representations: ClassVar[tuple[str, ...]] = ("backbone", "projector")
    needs_captions: ClassVar[bool] = False  # image-text methods (clip): the data must caption every image
    uses_temperature: ClassVar[bool] = True  # False: the loss has its own scale (MetAug's gamma); the shared
    # temperature is then left out of the stage key, so trials that differ only in it share their stages
    key_omits_at_default: ClassVar[tuple[str, ...]] = ()  # options added later: out of the key at their default

    def outputs(self) -> frozenset[str]:
        """What forward() exposes beside the loss for regularisers to read ('projections': both views' projections
        with gradient; 'logits': the contrastive logits), so a mismatch is a config error, not a failed stage."""
        return frozenset({"projections", "logits"})

    def key_fields(self) -> dict[str, Any]:
        """The options as hashed into stage keys (those in key_omits_at_default only when not at their default)."""
        out = self.model_dump(mode="json")
        for name in self.key_omits_at_default:
            if out.get(name) == type(self).model_fields[name].default:
                out.pop(name)
        return out

    def build(self, encoder: Any, *, temperature: float, gather: bool) -> Any:
        """The torch module (a ContrastiveMethod) around `encoder`."""
        raise NotImplementedError


class RegularizerOptions(BaseModel):
    """A term mixed into any method's loss: total = (1 - sum of weights) * method loss + sum of weight * term."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    weight: float = Field(gt=0.0, lt=1.0, description="mixing weight of this term (the method keeps 1 - sum)")
    reads: ClassVar[str] = "projections"  # the method output the term is computed from (MethodOptions.outputs)

    def loss(self, outputs: dict[str, Any], groups: Any) -> Any:
        """The term, from the method's outputs ('projections': one [B, D] tensor per view, ...)."""
        raise NotImplementedError


METHODS: Registry[type[MethodOptions]] = Registry("objective", "objective.name", "mcl_ray.objectives.methods")
REGULARIZERS: Registry[type[RegularizerOptions]] = Registry(
    "regularizer", "objective.regularizers.name", "mcl_ray.objectives.regularizers"
)


class ObjectiveSpec(BaseModel):
    """A stage's objective, resolved and validated: the method, its options and its regularisers."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    temperature: float = Field(gt=0.0)
    gather: bool = True
    options: MethodOptions
    regularizers: tuple[RegularizerOptions, ...] = ()

    def identity(self) -> dict[str, Any]:
        """What determines the trained weights (hashed into stage keys)."""
        return {
            "name": self.name, "temperature": self.temperature if self.options.uses_temperature else None,
            "gather": self.gather,
            "options": self.options.key_fields(),
            "regularizers": [r.model_dump(mode="json") for r in self.regularizers],
        }
