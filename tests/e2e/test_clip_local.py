"""Image-text MCL in one process (no Ray): tiny CLIP on captioned Trifeature, clusters of caption embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcl_ray.plan.local import run_local
from tiny import tiny_config

pytestmark = pytest.mark.slow

CLIP = ["model.backbone=open_clip:mcl-tiny", "model.head=none", "objective.name=clip", "eval.mmvp=trifeature",
        "eval.mmvp_pairs=4", "eval.retrieval_samples=50", "mcl.cluster_on=text"]


def test_local_clip_run_clusters_captions_and_reports_image_text_scores(tmp_path, data_root):
    cfg = tiny_config(tmp_path, data_root, *CLIP)
    result = run_local(cfg, progress=False, tensorboard=False)
    clusters = tmp_path / "clusters" / result.stages[0].keys["clusters"]
    labels = np.load(clusters / "cluster_labels.npy")
    assert labels.shape == (300,) and len(np.unique(labels)) == 4
    # captions that are the same string embed identically, so they land in one cluster
    from mcl_ray.data.registry import load_dataset

    train = load_dataset("trifeature", "train", root=data_root, image_size=16, size=300, cache_dir=data_root / "cache")
    by_caption: dict[str, set[int]] = {}
    for caption, label in zip(train.captions, labels):
        by_caption.setdefault(caption, set()).add(int(label))
    assert all(len(v) == 1 for v in by_caption.values())
    metrics = json.loads((tmp_path / cfg.name / "stage_2" / "metrics.json").read_text())
    assert {"zeroshot", "mmvp", "knn", "linear"} <= set(metrics["integrated_eval"]["texture"])
    assert set(metrics["stage_eval"]["retrieval"]) == {"i2t_r1", "t2i_r1"}
