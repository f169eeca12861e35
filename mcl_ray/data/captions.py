"""Captions built from attribute labels (captioned Trifeature) and the text prompts of zero-shot evaluation.

Each image's caption names all of its attributes through one of a few templates (chosen per image, seeded), so a
CLIP model can only match captions by seeing every attribute: the image-text analogue of the Trifeature
suppression probe. The first template is the canonical statement (used by the MMVP-format benchmark).
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np

TEMPLATES = (
    "{color} {shape} with {texture} texture",
    "a {shape} in {color} with a {texture} pattern",
    "a {texture} {color} {shape}",
    "{shape}, {color}, {texture}",
)
MAX_PROMPT_COMBINATIONS = 100  # zero-shot: prompts per class, over the other attributes' values


def caption_images(attributes: Mapping[str, np.ndarray], value_names: Mapping[str, Sequence[str]], seed: int,
                   templates: Sequence[str] = TEMPLATES) -> list[str]:
    """One caption per image: a seeded choice of template, filled with the image's attribute value names."""
    n = len(next(iter(attributes.values())))
    choice = np.random.default_rng(seed).integers(0, len(templates), n)
    names = list(value_names)
    return [templates[choice[i]].format(**{a: value_names[a][int(attributes[a][i])] for a in names}) for i in range(n)]


def statement(values: Mapping[str, str]) -> str:
    """The canonical caption of one attribute combination (the first template)."""
    return TEMPLATES[0].format(**values)


def class_prompts(value_names: Mapping[str, Sequence[str]], attribute: str, seed: int = 0) -> list[list[str]]:
    """For each value of `attribute`, the prompts averaged into its zero-shot class embedding: the canonical
    caption over (up to 100 seeded) combinations of the other attributes, so the class text carries no other
    attribute's value more than another's. Data whose captions are not templated use "a photo of {value}"."""
    others = [a for a in value_names if a != attribute]
    if set(value_names) != {"shape", "texture", "color"}:
        return [[f"a photo of {v}"] for v in value_names[attribute]]
    combos = list(itertools.product(*(range(len(value_names[a])) for a in others)))
    if len(combos) > MAX_PROMPT_COMBINATIONS:
        pick = np.random.default_rng(seed).choice(len(combos), MAX_PROMPT_COMBINATIONS, replace=False)
        combos = [combos[i] for i in sorted(pick)]
    return [[statement({attribute: value, **{a: value_names[a][c] for a, c in zip(others, combo)}}) for combo in combos]
            for value in value_names[attribute]]
