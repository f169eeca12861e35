"""Embed a whole image set without augmentation (for clustering, kNN and probes)."""

from __future__ import annotations

import numpy as np
import torch

from mcl_ray.data.augment import AugmentSpec, normalize_batch
from mcl_ray.data.base import image_rows


@torch.no_grad()
def embed_images(
    encoder: torch.nn.Module,
    images: np.ndarray,
    spec: AugmentSpec,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    keep: tuple[str, ...] = ("backbone", "projector"),
) -> dict[str, np.ndarray]:
    """Return {'backbone': [N, F], 'projector': [N, D]} float32 arrays (eval mode, no grad), only those in `keep`.

    Reads `images` (in memory or memory-mapped) one batch at a time and writes into preallocated outputs, so the
    peak is the outputs themselves: no per-batch list to concatenate, nothing kept that the caller drops."""
    was_training = encoder.training
    encoder.eval()
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(images), batch_size):
        batch = image_rows(images, slice(start, start + batch_size)).to(device, non_blocking=True)
        h, z = encoder(normalize_batch(batch, spec))
        for name, value in (("backbone", h), ("projector", z)):
            if name in keep:
                if name not in out:
                    out[name] = np.empty((len(images), value.shape[1]), np.float32)
                out[name][start:start + len(value)] = value.float().cpu().numpy()
    encoder.train(was_training)
    return out


@torch.no_grad()
def embed_texts(towers: torch.nn.Module, texts: list[str], *, device: torch.device | str = "cpu",
                batch_size: int = 512) -> np.ndarray:
    """[N, D] float32 text embeddings (eval mode, no grad) of an image-text model's text tower."""
    was_training = towers.training
    towers.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = towers.tokenize(texts[start : start + batch_size]).to(device)
        out.append(towers.encode_text(tokens).float().cpu().numpy())
    towers.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def clustering_embeddings(encoder: torch.nn.Module, images: np.ndarray, captions: list[str] | None,
                          views: tuple[str, ...], spec: AugmentSpec, *, device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """What a clustering step reads: the image embeddings ('backbone', 'projector'), and for the views 'text'
    the captions' embeddings by the model's text tower."""
    image_views = tuple(v for v in views if v != "text")
    out = embed_images(encoder, images, spec, device=device, keep=image_views) if image_views else {}
    if "text" in views:
        out["text"] = embed_texts(encoder.backbone, list(captions), device=device)
    return out
