"""What every Ray Train worker runs for one MCL stage: train (resuming from Ray Train's checkpoint), publish
the stage, then embed its shard and cluster it together with the ClusteringActor.

The maths is `train_stage`; this file only wires it to Ray Train (rank, world size, DDP, per-epoch
reports with checkpoints) and to the artifact store.
"""

from __future__ import annotations

import json
import logging
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

from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.errors import MCLError
from mcl_ray.mcl.clustering import assign
from mcl_ray.models.encoder import build_encoder
from mcl_ray.plan.artifacts import kmeans_sample, publish_stage
from mcl_ray.plan.hooks import step_recorder
from mcl_ray.store.artifacts import ArtifactStore, load_tensors
from mcl_ray.train.embed import clustering_embeddings, embed_sharded, spill_dir_for
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


class PeerLostClusteringActor(RuntimeError):
    """Another worker found the clustering actor dead during the phase this worker finished."""


def clustering_phase(world: int, device: torch.device, work) -> None:
    """Run one clustering phase (`work()`, which talks to the actor), then meet the other workers.

    The meeting is an all-reduce of "did the actor die here?" rather than a plain barrier: a worker that saw
    the actor die would otherwise leave, and the others would wait at the barrier for the process group's
    timeout (30 minutes). Every worker raises when any of them lost the actor."""
    lost: BaseException | None = None
    try:
        work()
    except ray.exceptions.RayActorError as exc:
        lost = exc
    if world > 1 and dist.is_initialized():
        flag = torch.tensor([0 if lost is None else 1], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and lost is None:
            raise PeerLostClusteringActor("another worker found the clustering actor dead")
    if lost is not None:
        raise lost


def _resume_state() -> dict[str, Any] | None:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return load_tensors(Path(d) / STATE_FILE, f"epoch checkpoint {checkpoint.path}/{STATE_FILE}")


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


def _cluster(job: dict[str, Any], spec, encoder, data, device, rank: int, world: int) -> dict | None:
    """Embed this rank's shard, send a bounded sample, assign the shard in chunks, let rank 0 commit."""
    images = data.pretrain.images
    n = len(images)
    bounds = np.linspace(0, n, world + 1).astype(int)
    start, stop = int(bounds[rank]), int(bounds[rank + 1])
    clustering = spec.clustering
    captions = None if data.pretrain.captions is None else data.pretrain.captions[start:stop]
    with spill_dir_for(stop - start) as spill:  # a large shard's embeddings live in a file, not in the worker's memory
        embedded = clustering_embeddings(encoder, images[start:stop], captions, clustering.views, spec.augment,
                                         device=device, spill_dir=spill)
        views = [embedded[v] for v in clustering.views]
        return _cluster_views(job, spec, views, n, start, device, rank, world)


def _cluster_views(job: dict[str, Any], spec, views: list[np.ndarray], n: int, start: int, device, rank: int,
                   world: int) -> dict | None:
    """Send this shard's k-means sample, let rank 0 fit, assign the shard, let rank 0 commit."""
    actor = job["actor"]
    clustering = spec.clustering
    fault = job["fault"] or {}
    if fault.get("kill_clustering_actor") and rank == 0 and not Path(fault["marker"]).exists():
        Path(fault["marker"]).write_text("killed the clustering actor")  # test hook: the actor dies mid-run
        ray.kill(actor)

    def send_samples():
        for view, emb in enumerate(views):
            sample = kmeans_sample(emb, n, clustering.max_points, clustering.seed, rank)
            ray.get(actor.add_sample.remote(job["job_id"], rank, sample, view))

    def fit():
        if rank == 0:
            ray.get(actor.fit.remote(job["job_id"]))

    def assign_shard():
        for view, emb in enumerate(views):
            centroids = ray.get(actor.centroids.remote(job["job_id"], view))
            labels, sq = assign(emb, centroids, use_gpu=None if device.type == "cuda" else False)
            ray.get(actor.add_labels.remote(job["job_id"], start, labels, float(sq.sum(dtype=np.float64)), view))

    for phase in (send_samples, fit, assign_shard):
        clustering_phase(world, device, phase)
    if rank != 0:
        return None
    return ray.get(actor.finish.remote(
        job["job_id"], store_root=job["store_root"], cluster_key=job["cluster_key"],
        previous_clusters=job["previous_clusters"], attributes=job["attributes"],
        meta={"stage": spec.index + 1, "key": job["cluster_key"], "stage_key": job["stage_key"]},
        min_group_size=clustering.min_group_size,
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
    spec = job["spec"]
    stage = spec.index
    store = ArtifactStore(job["store_root"])
    try:
        data = load_experiment_data(spec.data)
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
            probe = OnlineProbe.from_sets(data.probe, data.test, spec.online_knn_samples, spec.eval.seed) if rank == 0 else None
            ctx = StageContext(
                rank=rank, world_size=world, device=device,
                wrap_model=lambda m: ray.train.torch.prepare_model(m, move_to_device=False),
                on_epoch_end=_reporter(rank, job["fault"], job["checkpoint_every"], spec.train.epochs),
                on_step=step_recorder(job["hooks"].record_steps, stage, rank),
                progress=job["progress"],
            )
            result = train_stage(spec, data.pretrain, groups, ctx=ctx, init_state=init, resume_state=resume, online_probe=probe)
            encoder = result.encoder
            out.update(trained=True, history=result.history)
            # the probe and test passes are split across the workers; rank 0 gets them whole and commits the stage
            known = {split: embed_sharded(encoder, images, spec.augment, device=device)
                     for split, images in (("probe", data.probe.images), ("test", data.test.images))}
            if rank == 0:
                publish_stage(entry, encoder, result.history, data.probe.images, data.test.images, spec.augment,
                              device, {"stage": stage + 1, "key": job["stage_key"]}, known=known)
            del known
            _barrier(world)
        else:
            encoder = build_encoder(spec.model)
            encoder.load_state_dict(entry.get_state("encoder.pt"))
            encoder.to(device)
        if job["cluster_key"] and not store.clusters(job["cluster_key"]).is_complete():
            out["cluster"] = _cluster(job, spec, encoder, data, device, rank, world)
        return out
    except MCLError as exc:  # NaN loss, bad data, a damaged or unwritable artifact (disk full): a restart repeats it
        return {"error": f"{type(exc).__name__}: {exc}"}
    except (ray.exceptions.RayActorError, PeerLostClusteringActor) as exc:
        # the clustering actor lives outside the worker group: a restart of the workers cannot bring it back,
        # so say so at once instead of retrying max_failures times
        return {"error": f"stage {stage + 1}: the clustering actor died ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                         "rerun the experiment: the trained stage is kept and only the clustering is redone"}
