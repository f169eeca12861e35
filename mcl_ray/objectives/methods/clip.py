"""clip: symmetric image-text InfoNCE with a learnable logit scale (open_clip models; negatives = other captions)."""

from __future__ import annotations

from pydantic import Field

from mcl_ray.objectives.declarations import METHODS, MethodOptions


@METHODS.register("clip")
class CLIPOptions(MethodOptions):
    needs_captions = True
    learn_temperature: bool = Field(True, description="learn the logit scale (objective.temperature is its start "
                                                      "for random-init models; pretrained ones keep theirs)")

    def build(self, encoder, *, temperature: float, gather: bool):
        from mcl_ray.objectives.clip import CLIP

        return CLIP(encoder, temperature=temperature, gather=gather, learn_temperature=self.learn_temperature)
