"""What every Ray Train worker runs for one MCL stage: train (resuming from Ray Train's checkpoint), publish
the stage, then embed its shard and cluster it together with the ClusteringActor.

The maths is `train_stage`; this file only wires it to Ray Train (rank, world size, DDP, per-epoch
reports with checkpoints) and to the artifact store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.data.from_config import load_experiment_data
from mcl_ray.errors import MCLError
from mcl_ray.mcl.clustering import assign
from mcl_ray.models.encoder import build_encoder
from mcl_ray.store.artifacts import ArtifactStore
from mcl_ray.train.embed import embed_images
from mcl_ray.train.specs import augment_spec
from mcl_ray.train.stage import OnlineProbe, StageContext, train_stage

log = logging.getLogger("mcl_ray")
STATE_FILE = "state.pt"


def _setup_logging(progress: bool) -> None:
    """Our progress lines from rank 0; Ray Train's per-report INFO lines would drown them."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    # torch 2.14 deprecates torch.distributed.nn.functional.all_gather (see objectives/distributed.py)
    warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*", category=FutureWarning)
    try:  # Ray Train 2.60 logs every report from a logger named after its file, outside "ray.train"
        from ray.train.v2._internal.execution import context as train_context

        logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass
    logger = logging.getLogger("mcl_ray")
    logger.setLevel(logging.INFO if progress else logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False


def _barrier(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()


def _resume_state() -> dict[str, Any] | None:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)


def _reporter(rank: int, fault: dict[str, Any] | None, every: int, epochs: int):
    """Per-epoch hook: every rank reports (a barrier); rank 0 attaches a checkpoint every `every` epochs."""

    def on_epoch_end(metrics: dict[str, Any], state_fn) -> None:
        tmp = None
        checkpoint = None
        if rank == 0 and (metrics["epoch"] % every == 0 or metrics["epoch"] == epochs):
            tmp = tempfile.mkdtemp(prefix="mcl-ckpt-")
            torch.save(state_fn(), Path(tmp) / STATE_FILE)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(dict(metrics), checkpoint=checkpoint)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if fault and rank == fault["rank"] and metrics["epoch"] == fault["epoch"]:
            marker = Path(fault["marker"])
            if not marker.exists():  # exactly once: the restarted worker group must carry on
                _wait_for_registered_checkpoint(Path(fault["snapshot"]), metrics["epoch"])
                marker.write_text(f"killed rank {rank} after epoch {metrics['epoch']}\n")
                os._exit(1)

    return on_epoch_end


def _wait_for_registered_checkpoint(snapshot: Path, epoch: int, timeout_s: float = 60.0) -> None:
    """Fault injection: die only once Ray Train's controller has recorded this epoch's checkpoint, so the
    test knows exactly which epoch the restart must resume after (the controller registers reports
    asynchronously; dying right after `report` races it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
            if latest.get("metrics", {}).get("epoch") == epoch:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)


def _step_recorder(path: str | None, stage: int, rank: int):
    """Test hook: append 'epoch step sorted-unique-groups' per step to a per-stage, per-rank file."""
    if not path:
        return None
    out = Path(path) / f"stage{stage + 1}_rank{rank}.txt"

    def on_step(epoch: int, step: int, groups: torch.Tensor) -> None:
        with out.open("a") as f:
            f.write(f"{epoch} {step} {','.join(map(str, sorted(set(groups.tolist()))))}\n")

    return on_step


def _publish_stage(job: dict[str, Any], cfg: ExperimentConfig, encoder, history, data, device) -> None:
    """Rank 0: weights, history and probe/test embeddings, then the commit marker (last)."""
    store = ArtifactStore(job["store_root"])
    entry = store.stage(job["stage_key"])
    spec = augment_spec(cfg)
    entry.put_state("encoder.pt", {k: v.detach().cpu() for k, v in encoder.state_dict().items()})
    entry.put_json("history.json", history)
    for split, images in (("probe", data.probe.images), ("test", data.test.images)):
        emb = embed_images(encoder, images, spec, device=device)
        for kind, array in emb.items():
            entry.put_array(f"{split}_{kind}.npy", array)
    entry.commit({"stage": job["stage"] + 1, "key": job["stage_key"], "config": job["cfg"]})


def _cluster(job: dict[str, Any], cfg: ExperimentConfig, encoder, data, device, rank: int, world: int) -> dict | None:
    """Embed this rank's shard, send a bounded sample, assign the shard in chunks, let rank 0 commit."""
    actor = job["actor"]
    images = data.pretrain.images
    n = len(images)
    bounds = np.linspace(0, n, world + 1).astype(int)
    start, stop = int(bounds[rank]), int(bounds[rank + 1])
    emb = embed_images(encoder, images[start:stop], augment_spec(cfg), device=device)[cfg.mcl.cluster_on]
    budget = cfg.mcl.kmeans_max_points or n
    take = min(len(emb), math.ceil(budget * len(emb) / n))
    rng = np.random.default_rng(job["kmeans_seed"] * 1000 + rank)
    sample = emb[np.sort(rng.choice(len(emb), size=take, replace=False))] if take < len(emb) else emb
    ray.get(actor.add_sample.remote(job["job_id"], rank, sample))
    _barrier(world)
    if rank == 0:
        ray.get(actor.fit.remote(job["job_id"]))
    _barrier(world)
    centroids = ray.get(actor.centroids.remote(job["job_id"]))
    labels, sq = assign(emb, centroids, use_gpu=None if device.type == "cuda" else False)
    ray.get(actor.add_labels.remote(job["job_id"], start, labels, float(sq.sum(dtype=np.float64))))
    _barrier(world)
    if rank != 0:
        return None
    return ray.get(actor.finish.remote(
        job["job_id"], store_root=job["store_root"], cluster_key=job["cluster_key"],
        previous_clusters=job["previous_clusters"], attributes=job["attributes"],
        meta={"stage": job["stage"] + 1, "key": job["cluster_key"], "stage_key": job["stage_key"]},
    ))


def stage_worker(job: dict[str, Any]) -> dict[str, Any]:
    """train_loop_per_worker. Returns (rank 0's value reaches the driver) history and clustering info,
    or {'error': message} for errors a restart cannot fix (NaN loss, bad data), so Ray does not retry them."""
    _setup_logging(job["progress"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    threads = job["threads"] or max(1, (os.cpu_count() or 1) // context.get_local_world_size())
    torch.set_num_threads(threads)
    device = ray.train.torch.get_device()
    cfg = ExperimentConfig.model_validate(job["cfg"])
    stage = job["stage"]
    store = ArtifactStore(job["store_root"])
    try:
        data = load_experiment_data(cfg.data)
        out: dict[str, Any] = {"trained": False, "history": None, "cluster": None, "resumed_after_epoch": None}
        entry = store.stage(job["stage_key"])
        if not entry.is_complete():
            groups = store.clusters(job["previous_clusters"]).get_array("groups.npy") if job["previous_clusters"] else None
            init = store.stage(job["init_stage"]).get_state("encoder.pt") if job["init_stage"] else job["init_state"]
            resume = _resume_state()
            if resume is not None:
                out["resumed_after_epoch"] = int(resume["epoch"]) + 1
                if rank == 0:
                    log.info("stage %d: resuming after epoch %d from Ray Train's checkpoint", stage + 1, resume["epoch"] + 1)
            probe = OnlineProbe.from_sets(data.probe, data.test, cfg.eval.online_knn_samples, cfg.seed) if rank == 0 else None
            ctx = StageContext(
                rank=rank, world_size=world, device=device,
                wrap_model=lambda m: ray.train.torch.prepare_model(m, move_to_device=False),
                on_epoch_end=_reporter(rank, job.get("fault"), cfg.ray.checkpoint_every, cfg.train.epochs),
                on_step=_step_recorder(job.get("record_steps"), stage, rank),
                progress=job["progress"],
            )
            result = train_stage(cfg, stage, data.pretrain, groups, ctx=ctx, init_state=init, resume_state=resume, online_probe=probe)
            encoder = result.encoder
            out.update(trained=True, history=result.history)
            if rank == 0:
                _publish_stage(job, cfg, encoder, result.history, data, device)
            _barrier(world)
        else:
            encoder = build_encoder(cfg.model, cfg.data.image_size)
            encoder.load_state_dict(entry.get_state("encoder.pt"))
            encoder.to(device)
        if job["cluster_key"] and not store.clusters(job["cluster_key"]).is_complete():
            out["cluster"] = _cluster(job, cfg, encoder, data, device, rank, world)
        return out
    except MCLError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
