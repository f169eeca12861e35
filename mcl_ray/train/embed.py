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
) -> dict[str, np.ndarray]:
    """Return {'backbone': [N, F], 'projector': [N, D]} float32 arrays (eval mode, no grad)."""
    was_training = encoder.training
    encoder.eval()
    feats: list[np.ndarray] = []
    projs: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        batch = image_rows(images, slice(start, start + batch_size)).to(device, non_blocking=True)
        h, z = encoder(normalize_batch(batch, spec))
        feats.append(h.float().cpu().numpy())
        projs.append(z.float().cpu().numpy())
    encoder.train(was_training)
    return {"backbone": np.concatenate(feats), "projector": np.concatenate(projs)}


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
    out = embed_images(encoder, images, spec, device=device) if any(v != "text" for v in views) else {}
    if "text" in views:
        out["text"] = embed_texts(encoder.backbone, list(captions), device=device)
    return out
