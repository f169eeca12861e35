"""ifm: Implicit Feature Modification (Robinson et al., NeurIPS 2021), mixed into any logits-based method.

An adversarial perturbation in similarity space: the positive's similarity lowered by epsilon and every
negative's raised by epsilon, i.e. logits_adv = cat([l_pos - eps, l_neg + eps]) / tau, makes the features the
model leans on harder to use and pushes it to use others. The paper's loss is (CE(logits) + alpha *
CE(logits_adv)) / (1 + alpha), which is this mix with weight = alpha / (1 + alpha): the default weight 0.5 is
the paper's alpha = 1, epsilon 0.1. Masked entries (MCL's other groups, unfilled queue slots) stay masked, so
it composes with the group masks. The effect scales with epsilon / temperature: search them together.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from mcl_ray.objectives.declarations import REGULARIZERS, RegularizerOptions


@REGULARIZERS.register("ifm")
class IFM(RegularizerOptions):
    name: str = "ifm"
    weight: float = Field(0.5, gt=0.0, lt=1.0, description="alpha / (1 + alpha); 0.5 is the paper's alpha = 1")
    epsilon: float = Field(0.1, gt=0.0, le=2.0, description="perturbation of the cosine similarities")
    reads: ClassVar[str] = "logits"

    def loss(self, outputs: dict[str, Any], groups: Any) -> Any:
        from mcl_ray.errors import ConfigError

        sets = outputs.get("logits")
        if not sets:
            raise ConfigError("objective.regularizers: ifm needs a method that exposes its logits (simclr, moco)")
        return sum(adversarial_loss(s, self.epsilon) for s in sets) / len(sets)


def adversarial_loss(logits, epsilon: float):
    """The method's loss on the perturbed logits: positive - eps, negatives + eps (in similarity units)."""
    import torch

    shift = epsilon / logits.temperature
    rows = torch.arange(logits.logits.shape[0], device=logits.logits.device)
    adv = logits.logits + shift  # -inf stays -inf: masked pairs stay out
    adv[rows, logits.positive] = logits.logits[rows, logits.positive] - shift
    return logits.reduce(torch.logsumexp(adv, dim=1) - adv[rows, logits.positive])
