"""The tiny experiment the end-to-end tests train (seconds per stage on 2 CPU cores)."""

from __future__ import annotations

from mcl_ray.plan.from_config import load_config

TINY = [
    "data.train_size=300", "data.test_size=150", "data.image_size=16",
    "model.backbone=test_resnet", "model.proj_hidden_dim=32", "model.proj_dim=16",
    "train.epochs=2", "train.batch_size=64", "mcl.stages=2", "mcl.clusters=4",
    "eval.linear_epochs=20", "eval.online_knn_samples=100", "train.device=cpu",
]


def tiny_config(tmp_path, data_root, *extra: str):
    """TINY writing to tmp_path, with Trifeature generated (once per module) under data_root; extra overrides win."""
    return load_config(overrides=[*TINY, f"output_dir={tmp_path}", f"data.root={data_root}", *extra])


def stage_artifacts(run_dir, stage: int, kind: str = "stage"):
    """Where a run's stage `stage` (1-based) keeps its trained stage ('stage') or its clustering ('clusters')."""
    import json
    from pathlib import Path

    metrics = json.loads((Path(run_dir) / f"stage_{stage}" / "metrics.json").read_text())
    uri = metrics["keys"][f"{kind}_uri"]
    return Path(uri) if uri else None
