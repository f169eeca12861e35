"""Run a whole MCL experiment in one process (no Ray): train stage, embed, cluster, evaluate, repeat.

This is the reference the Ray engine must agree with, and what a laptop user runs with `--local`.
Each finished stage is written atomically to `<output_dir>/<name>/stage_<k>/`, so a crash in stage 3
keeps stages 1 and 2.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcl_ray.config.loader import dump_config
from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.data.from_config import ExperimentData, load_experiment_data
from mcl_ray.errors import ConfigError
from mcl_ray.eval.attributes import evaluate_features
from mcl_ray.mcl.cluster_stats import cluster_stats
from mcl_ray.mcl.clustering import kmeans
from mcl_ray.mcl.groups import combine_labels
from mcl_ray.mcl.integration import integrate
from mcl_ray.tracking.tables import fixed_width
from mcl_ray.train.embed import embed_images
from mcl_ray.train.specs import augment_spec, resolve_device
from mcl_ray.train.stage import OnlineProbe, StageContext, stage_seed, train_stage

log = logging.getLogger("mcl_ray")


@dataclass
class StageRecord:
    stage: int
    history: list[dict[str, Any]]
    stage_eval: dict[str, dict[str, float]]
    integrated_eval: dict[str, dict[str, float]]
    cluster: dict[str, Any] | None
    path: str
    reused: dict[str, bool] | None = None  # engine: {"stage": ..., "clusters": ...} taken from earlier runs
    keys: dict[str, str | None] | None = None  # engine: content keys of the stage and its clustering


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    run_dir: Path
    stages: list[StageRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "run_dir": str(self.run_dir),
            "stages": [
                {
                    "stage": s.stage,
                    "stage_eval": s.stage_eval,
                    "integrated_eval": s.integrated_eval,
                    "cluster": s.cluster,
                    "final_loss": s.history[-1]["loss"] if s.history else None,
                    "path": s.path,
                    "reused": s.reused,
                    "keys": s.keys,
                }
                for s in self.stages
            ],
        }


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Atomic on one filesystem: the stage directory appears complete or not at all."""
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


def evaluate(cfg: ExperimentConfig, probe_feats, test_feats, data: ExperimentData) -> dict[str, dict[str, float]]:
    return evaluate_features(
        probe_feats,
        data.probe.attributes,
        test_feats,
        data.test.attributes,
        knn_k=cfg.eval.knn_k,
        knn_temperature=cfg.eval.knn_temperature,
        linear=cfg.eval.linear,
        linear_kwargs={"epochs": cfg.eval.linear_epochs, "seed": cfg.seed},
    )


def load_init_checkpoint(cfg: ExperimentConfig) -> dict[str, torch.Tensor] | None:
    """The encoder state every stage starts from when mcl.init is 'pretrained' with a checkpoint file."""
    if cfg.mcl.init != "pretrained" or not cfg.mcl.init_checkpoint:
        return None
    path = Path(cfg.mcl.init_checkpoint).expanduser()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a state dict
        raise ConfigError(f"mcl.init_checkpoint: cannot load {path}: {exc}") from None


def run_local(cfg: ExperimentConfig, *, data: ExperimentData | None = None, progress: bool = True) -> ExperimentResult:
    """Run all `cfg.mcl.stages` stages; returns per-stage metrics and writes artifacts under the run directory."""
    device = resolve_device(cfg.train.device)
    run_dir = Path(cfg.output_dir).expanduser() / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    data = data or load_experiment_data(cfg.data)
    spec = augment_spec(cfg)
    probe_online = OnlineProbe.from_sets(data.probe, data.test, cfg.eval.online_knn_samples, cfg.seed)
    same_probe = data.probe is data.pretrain

    result = ExperimentResult(config=cfg, run_dir=run_dir)
    groups: np.ndarray | None = None
    probe_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    previous_state: dict[str, torch.Tensor] | None = None
    start_state = load_init_checkpoint(cfg)
    for stage in range(cfg.mcl.stages):
        t0 = time.perf_counter()
        init = previous_state if cfg.mcl.init == "previous" else start_state
        trained = train_stage(
            cfg, stage, data.pretrain, groups,
            ctx=StageContext(device=device, progress=progress), init_state=init, online_probe=probe_online,
            embed=True,
        )
        encoder = trained.encoder
        previous_state = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
        pre = trained.embeddings
        probe = pre if same_probe else embed_images(encoder, data.probe.images, spec, device=device)
        test = embed_images(encoder, data.test.images, spec, device=device)
        key = cfg.mcl.integrate
        probe_parts.append(probe[key])
        test_parts.append(test[key])
        stage_eval = evaluate(cfg, probe[key], test[key], data)
        integrated_eval = evaluate(cfg, integrate(probe_parts), integrate(test_parts), data)

        stage_tmp = run_dir / f".stage_{stage + 1}.tmp"
        shutil.rmtree(stage_tmp, ignore_errors=True)
        stage_tmp.mkdir(parents=True)
        torch.save(previous_state, stage_tmp / "encoder.pt")
        np.save(stage_tmp / "test_embeddings.npy", test[key])
        cluster_info = None
        if stage < cfg.mcl.stages - 1:
            k = cfg.mcl.clusters_after(stage)
            km = kmeans(
                pre[cfg.mcl.cluster_on], k, seed=stage_seed(cfg, stage), niter=cfg.mcl.kmeans_iters,
                max_train_points=cfg.mcl.kmeans_max_points,
                use_gpu=None if cfg.mcl.kmeans_gpu == "auto" else cfg.mcl.kmeans_gpu,
            )
            groups = combine_labels(groups, km.labels, k)
            cluster_info = {
                "clusters": cluster_stats(km.labels, k=k, attributes=data.pretrain.attributes),
                "groups": cluster_stats(groups, attributes=data.pretrain.attributes),
                "inertia": km.inertia,
            }
            np.save(stage_tmp / "cluster_labels.npy", km.labels)
            np.save(stage_tmp / "centroids.npy", km.centroids)
            np.save(stage_tmp / "groups.npy", groups)
        record = StageRecord(
            stage=stage + 1, history=trained.history, stage_eval=stage_eval, integrated_eval=integrated_eval,
            cluster=cluster_info, path=str(run_dir / f"stage_{stage + 1}"),
        )
        write_json(stage_tmp / "history.json", trained.history)
        write_json(stage_tmp / "metrics.json", {
            "stage": stage + 1, "stage_eval": stage_eval, "integrated_eval": integrated_eval,
            "cluster": cluster_info, "seconds": time.perf_counter() - t0,
        })
        publish_dir(stage_tmp, run_dir / f"stage_{stage + 1}")
        result.stages.append(record)
        if progress:
            log.info("stage %d done in %.0f s: integrated %s", stage + 1, time.perf_counter() - t0, integrated_eval)
    write_json(run_dir / "summary.json", result.summary())
    return result


def results_table(result: ExperimentResult) -> str:
    """Per-stage, per-attribute table: each stage alone and the integrated representation so far."""
    attrs = sorted({a for s in result.stages for a in s.stage_eval})
    metrics = sorted({m for s in result.stages for a in s.stage_eval.values() for m in a})
    header = ["stage", "repr"] + [f"{a}/{m}" for a in attrs for m in metrics]
    rows = []
    for s in result.stages:
        for name, ev in (("stage", s.stage_eval), ("integrated", s.integrated_eval)):
            rows.append([str(s.stage), name] + [f"{ev.get(a, {}).get(m, float('nan')):.3f}" for a in attrs for m in metrics])
    return fixed_width(header, rows)
