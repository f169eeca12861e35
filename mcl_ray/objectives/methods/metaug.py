"""metaug: MetAug (Li et al., ICML 2022), feature-space augmentation by meta-learned generators.

Per-view generator MLPs turn the encoder's projections into extra, deliberately hard features; the encoder is
trained with a circle-style unified loss on the original and the generated features plus a margin term, and
the generators by a second-order "virtual step" of the encoder. `objective.temperature` is not used: the
unified loss's scale is `gamma` (gamma * (s + 1) / 2 acts like a temperature of 2 / gamma, 0.125 at 16).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mcl_ray.objectives.declarations import METHODS, MethodOptions


@METHODS.register("metaug")
class MetAugOptions(MethodOptions):
    uses_temperature: ClassVar[bool] = False  # the unified loss's scale is gamma
    gamma: float = Field(16.0, gt=0.0, le=1000.0,
                         description="scale of the unified loss on similarities mapped to [0, 1]; the paper's 16")
    generator_hidden: int = Field(2048, ge=1, le=65536,
                                  description="width of the generators' two hidden layers (paper: 2048; smaller "
                                              "is much cheaper on CPU)")
    augmented_weight: float = Field(0.1, ge=0.0, le=1.0,
                                    description="weight of the unified loss on generated features in the encoder "
                                                "loss: small, they augment the original loss rather than replace it")
    margin_weight: float = Field(0.1, ge=0.0, le=100.0,
                                 description="weight of the margin-injected term that keeps generated features "
                                             "harder than the batch's hardest original pair (0: off)")
    generator_lr: float = Field(0.03, gt=0.0, le=10.0,
                                description="SGD learning rate of the generators' own optimizer (paper: 0.03)")
    generator_momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum of the generators (paper: 0.9)")
    generator_weight_decay: float = Field(1e-4, ge=0.0, le=1.0,
                                          description="SGD weight decay of the generators (paper: 1e-4)")
    virtual_lr: float = Field(0.03, gt=0.0, le=10.0,
                              description="alpha of the virtual encoder step theta' = theta - alpha * grad through "
                                          "which the generators learn; stands in for one real encoder update")

    def outputs(self) -> frozenset[str]:
        return frozenset({"projections"})  # its loss is the unified (circle) loss, not softmax logits

    def build(self, encoder, *, temperature: float, gather: bool):
        from mcl_ray.objectives.metaug import MetAug

        return MetAug(encoder, temperature=temperature, gather=gather, gamma=self.gamma,
                      generator_hidden=self.generator_hidden, augmented_weight=self.augmented_weight,
                      margin_weight=self.margin_weight, generator_lr=self.generator_lr,
                      generator_momentum=self.generator_momentum, generator_weight_decay=self.generator_weight_decay,
                      virtual_lr=self.virtual_lr)
