"""Image-text scores from frozen features (NumPy): MMVP pair accuracy, zero-shot accuracy, retrieval R@1.

Features are compared by cosine similarity, so one stage's features and the integrated ones (each stage's
normalised features concatenated and normalised once, as in the official MCL MMVP evaluation) are scored alike.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mcl_ray.errors import DataError
from mcl_ray.mcl.integration import l2_normalize


def mmvp_pair_accuracy(image: np.ndarray, text: np.ndarray, categories: Sequence[str]) -> dict[str, float]:
    """{category: pair accuracy, ..., '*': overall}. Pair p is images/statements 2p and 2p+1; each statement picks
    the closer of the pair's two images (the official script's softmax over two similarities picks the same;
    a tie goes to the second image, as there); a pair counts only when both statements pick their own image."""
    pairs = len(categories)
    if image.shape[0] != 2 * pairs or text.shape[0] != 2 * pairs:
        raise DataError(f"mmvp: {pairs} pairs need {2 * pairs} image and text rows, got {image.shape[0]} and {text.shape[0]}")
    img, txt = l2_normalize(image), l2_normalize(text)
    first, second = img[0::2], img[1::2]
    t1, t2 = txt[0::2], txt[1::2]
    picks_first_1 = (t1 * first).sum(1) > (t1 * second).sum(1)  # statement 1 should pick image 1
    picks_first_2 = (t2 * first).sum(1) > (t2 * second).sum(1)  # statement 2 should pick image 2
    correct = picks_first_1 & ~picks_first_2
    cats = np.asarray(categories)
    out = {str(c): float(correct[cats == c].mean()) for c in dict.fromkeys(categories)}
    out["*"] = float(correct.mean())
    return out


def zero_shot_accuracy(image: np.ndarray, labels: np.ndarray, class_text: np.ndarray) -> float:
    """Accuracy of predicting `labels` by the most similar class embedding ([C, D], one per label value)."""
    if image.shape[0] != len(labels):
        raise DataError(f"zero-shot: {image.shape[0]} images but {len(labels)} labels")
    pred = (l2_normalize(image) @ l2_normalize(class_text).T).argmax(1)
    return float((pred == np.asarray(labels)).mean())


def class_embeddings(prompt_features: Sequence[np.ndarray]) -> np.ndarray:
    """One embedding per class: the mean of its prompts' normalised embeddings (open_clip's template ensemble)."""
    return l2_normalize(np.stack([l2_normalize(f).mean(0) for f in prompt_features]))


def retrieval_at_1(image: np.ndarray, text: np.ndarray, caption_ids: np.ndarray) -> dict[str, float]:
    """{'i2t_r1', 't2i_r1'} over N held-out pairs. Identical captions are interchangeable: a retrieval counts as
    correct when it returns any item whose caption equals the query's (`caption_ids`: one id per distinct caption)."""
    ids = np.asarray(caption_ids)
    if not (image.shape[0] == text.shape[0] == len(ids)):
        raise DataError(f"retrieval: {image.shape[0]} images, {text.shape[0]} captions, {len(ids)} ids")
    sim = l2_normalize(image) @ l2_normalize(text).T
    return {"i2t_r1": float((ids[sim.argmax(1)] == ids).mean()), "t2i_r1": float((ids[sim.argmax(0)] == ids).mean())}
