"""Image-text evaluation of each stage and of the integrated stages: MMVP pairs, zero-shot, retrieval.

Runs where the run's stages are evaluated (the driver), on each stage's stored weights: image and text features
of the evaluation sets are computed once per stage and kept, so the integrated scores concatenate every stage's
normalised features (images and texts alike) and normalise once, as the official MCL MMVP notebook does. The
scores join the per-attribute ones: `<attribute>/zeroshot`, `<mmvp category>/mmvp` (for the generated benchmark
the categories are the attributes), `mmvp/pairs` (all pairs) and `retrieval/{i2t_r1,t2i_r1}`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from mcl_ray.data.experiment_data import ExperimentData
from mcl_ray.data.mmvp import MMVPSet, load_mmvp, trifeature_mmvp, write_mmvp
from mcl_ray.eval.image_text import class_embeddings, mmvp_pair_accuracy, retrieval_at_1, zero_shot_accuracy
from mcl_ray.mcl.integration import integrate

log = logging.getLogger("mcl_ray")


def category_key(name: str) -> str:
    """A metric-name component for an MMVP category ('Color and Appearance' -> 'color_and_appearance')."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "category"


def mmvp_benchmark(setting: str | None, image_size: int, pairs: int, seed: int, cache: Path) -> MMVPSet | None:
    """The MMVP set `eval.mmvp` names: a folder in the official layout, or 'trifeature' (generated once into
    the cache in that layout, then read back by the same reader)."""
    if not setting:
        return None
    if setting == "trifeature":
        folder = cache / f"mmvp-trifeature-px{image_size}-pairs{pairs}-seed{seed}"
        if not (folder / "Questions.csv").is_file():
            write_mmvp(folder, trifeature_mmvp(pairs, image_size, seed))
        return load_mmvp(folder, image_size)
    return load_mmvp(setting, image_size)


class ImageTextEvaluation:
    """Per-stage features of the evaluation sets; `add_stage(...)` -> (stage alone, integrated) scores."""

    def __init__(self, spec, data: ExperimentData, cache: Path, device="cpu") -> None:
        self.device = device
        self.mmvp = mmvp_benchmark(spec.mmvp, data.test.image_size, spec.mmvp_pairs, spec.seed, cache)
        test = data.test
        self.retrieval_rows = None
        if test.captions is not None:
            rows = np.random.default_rng(spec.seed).permutation(len(test))[: spec.retrieval_samples]
            self.retrieval_rows = np.sort(rows)
            captions = [test.captions[i] for i in self.retrieval_rows]
            self.captions = captions
            _, self.caption_ids = np.unique(np.asarray(captions), return_inverse=True)
        from mcl_ray.data.captions import class_prompts

        self.labels = {a: test.attributes[a] for a in test.value_names if a in test.attributes}
        self.prompts = {a: class_prompts(test.value_names, a, spec.seed) for a in self.labels}
        self.parts: dict[str, list[np.ndarray]] = {}

    def _features(self, towers, test_features: np.ndarray, augment) -> dict[str, np.ndarray]:
        from mcl_ray.train.embed import embed_images, embed_texts

        out = {"test_image": test_features}
        if self.retrieval_rows is not None:
            out["retrieval_text"] = embed_texts(towers, self.captions, device=self.device)
        for attribute, per_class in self.prompts.items():
            flat = [p for prompts in per_class for p in prompts]
            feats = embed_texts(towers, flat, device=self.device)
            sizes = np.cumsum([0] + [len(p) for p in per_class])
            out[f"class_{attribute}"] = class_embeddings([feats[a:b] for a, b in zip(sizes[:-1], sizes[1:])])
        if self.mmvp is not None:
            out["mmvp_image"] = embed_images(_ImageTower(towers), self.mmvp.images, augment, device=self.device)["backbone"]
            out["mmvp_text"] = embed_texts(towers, self.mmvp.prompts, device=self.device)
        return out

    def add_stage(self, towers, test_features: np.ndarray, augment) -> tuple[dict, dict]:
        """Score one more stage (its towers, and its stored test-image embeddings) alone and integrated."""
        feats = self._features(towers, test_features, augment)
        for name, value in feats.items():
            self.parts.setdefault(name, []).append(value)
        integrated = {name: integrate(parts) for name, parts in self.parts.items()}
        return self._scores(feats), self._scores(integrated)

    def _scores(self, f: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for attribute, labels in self.labels.items():
            out.setdefault(attribute, {})["zeroshot"] = zero_shot_accuracy(f["test_image"], labels, f[f"class_{attribute}"])
        if self.retrieval_rows is not None:
            out["retrieval"] = retrieval_at_1(f["test_image"][self.retrieval_rows], f["retrieval_text"], self.caption_ids)
        if self.mmvp is not None:
            pairs = mmvp_pair_accuracy(f["mmvp_image"], f["mmvp_text"], self.mmvp.categories)
            out["mmvp"] = {"pairs": pairs.pop("*")}
            for category, value in pairs.items():
                out.setdefault(category_key(category), {})["mmvp"] = value
        return out


class _ImageTower:
    """embed_images' view of the towers: (h, z) = (image embedding, image embedding)."""

    def __init__(self, towers) -> None:
        self.towers = towers
        self.training = towers.training

    def eval(self):
        self.towers.eval()

    def train(self, mode: bool = True):
        self.towers.train(mode)

    def __call__(self, images):
        h = self.towers(images)
        return h, h
