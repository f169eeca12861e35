"""The Ray engine end to end on CPU: 2-worker stages, clustering actor, reuse, resume, faults, NaN, leases.

One Ray instance serves the module; it declares 8 logical CPUs so two Train workers (1 CPU each), the
clustering actor and a waiting driver always fit (Ray CPUs are logical; the 2 real cores are shared).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
import ray
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mcl_ray.cli import main
from mcl_ray.engine import run_mcl
from mcl_ray.engine.leases import stage_lease
from mcl_ray.errors import TrainingError
from mcl_ray.mcl.sampler import GroupBatchSampler
from mcl_ray.plan.hooks import RunHooks
from mcl_ray.plan.local import run_local
from mcl_ray.store import ArtifactStore
from mcl_ray.plan.from_config import stage_seed
from tiny import TINY, tiny_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# the tiny experiment on 2 Ray Train workers; 240 images split evenly over ranks and batches
ENGINE = ["data.train_size=240", "data.test_size=120", "train.workers=2", "eval.online_knn_every=0"]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=8, object_store_memory=300 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()


def config(tmp_path, data_root, *extra):
    return tiny_config(tmp_path, data_root, *ENGINE, *extra)


def read_steps(path, stage):
    """{(epoch, step): {rank: groups}} from the per-rank step logs the workers wrote."""
    steps = defaultdict(dict)
    for rank_file in sorted(path.glob(f"stage{stage}_rank*.txt")):
        rank = int(rank_file.stem.split("rank")[1])
        for line in rank_file.read_text().splitlines():
            epoch, step, groups = line.split()
            steps[(int(epoch), int(step))][rank] = {int(g) for g in groups.split(",")}
    return dict(steps)


def expected_steps(groups, cfg, stage, world):
    """The same plan computed here from the sampler: what each rank must have trained on."""
    out = defaultdict(dict)
    for rank in range(world):
        sampler = GroupBatchSampler(groups, num_samples=len(groups), global_batch_size=cfg.train.batch_size,
                                    rank=rank, world_size=world, seed=stage_seed(cfg, stage - 1))
        for epoch in range(cfg.train.epochs):
            sampler.set_epoch(epoch)
            for step, idx in enumerate(sampler):
                out[(epoch, step)][rank] = {int(g) for g in groups[idx]}
    return dict(out)


def epoch_losses(logdir) -> list[tuple[int, float]]:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return sorted((e.step, round(e.value, 5)) for e in events.Scalars("epoch/loss"))


def clustering_actors() -> int:
    from ray.util.state import list_actors

    return len(list_actors(filters=[("class_name", "=", "ClusteringActor")], limit=1000))


def test_two_worker_run_keeps_ranks_on_one_group_then_reuses_everything(tmp_path, data_root):
    cfg = config(tmp_path, data_root, "train.batch_size=32", "mcl.sampling=group_batches")
    steps_dir = tmp_path / "steps"
    steps_dir.mkdir()
    result = run_mcl(cfg, progress=False, hooks=RunHooks(record_steps=str(steps_dir)))
    assert [s.stage for s in result.stages] == [1, 2]
    assert all(s.reused == {"stage": False, "clusters": None if s.stage == 2 else False} for s in result.stages)

    # stage 2 trained on the stage-1 clusters with Ray's ranks: each rank saw exactly the sampler's plan,
    # and in every single-group step both ranks held the same group (the global batch's negatives)
    groups = np.load(tmp_path / "clusters" / result.stages[0].keys["clusters"] / "groups.npy")
    assert groups.shape == (240,) and len(np.unique(groups)) == 4
    steps = read_steps(steps_dir, 2)
    assert steps == expected_steps(groups, cfg, 2, world=2)
    pure = [v for v in steps.values() if len(v[0] | v[1]) == 1]
    assert len(pure) >= 4 and all(v[0] == v[1] for v in pure)
    assert all(v[0] == {0} and v[1] == {0} for v in read_steps(steps_dir, 1).values())  # stage 1: one group

    run_dir = tmp_path / cfg.name
    for s in result.stages:
        stage_dir = tmp_path / "stages" / s.keys["stage"]
        assert (stage_dir / "_COMPLETE.json").exists()
        state = torch.load(stage_dir / "encoder.pt", weights_only=True)
        assert any(k.startswith("backbone") for k in state)
        assert [h["epoch"] for h in s.history] == [1, 2]
        metrics = json.loads((run_dir / f"stage_{s.stage}" / "metrics.json").read_text())
        assert set(metrics["integrated_eval"]) == {"shape", "texture", "color"}
    stats = json.loads((tmp_path / "clusters" / result.stages[0].keys["clusters"] / "stats.json").read_text())
    assert stats["clusters"]["num_groups"] == 4 and stats["train_points"] == 240
    # per-epoch curves, written live by the Train controller: each epoch once, on the global epoch axis
    losses = [round(h["loss"], 5) for s in result.stages for h in s.history]
    assert epoch_losses(run_dir / "tensorboard") == list(zip([1, 2, 3, 4], losses))
    assert not (tmp_path / "ray_train" / f"stage-{result.stages[0].keys['stage']}").exists()  # checkpoints cleaned

    actors_before = clustering_actors()
    again = run_mcl(cfg, progress=False)
    assert [s.reused for s in again.stages] == [{"stage": True, "clusters": True}, {"stage": True, "clusters": None}]
    # a run that reuses everything starts no clustering actor (one torn down inside its start-up made Ray print
    # "unexpected system state ... Raylet has most likely crashed" dumps in studies)
    assert clustering_actors() == actors_before
    assert [s.integrated_eval for s in again.stages] == [s.integrated_eval for s in result.stages]
    assert epoch_losses(run_dir / "tensorboard") == list(zip([1, 2, 3, 4], losses))  # the re-run drew nothing twice
    # a different K after stage 1 reuses the trained stage 1 and re-clusters it
    other = run_mcl(config(tmp_path, data_root, "train.batch_size=32", "mcl.clusters=3", "name=k3"), progress=False)
    assert other.stages[0].reused == {"stage": True, "clusters": False}
    assert other.stages[1].reused["stage"] is False


def test_interrupted_stage_resumes_from_its_last_epoch_checkpoint(tmp_path, data_root):
    marker = tmp_path / "killed"
    fault = {"epoch": 2, "rank": 1, "marker": str(marker)}
    cfg = config(tmp_path, data_root, "mcl.stages=1", "train.epochs=3", "ray.max_failures=0")
    with pytest.raises(TrainingError, match="stage 1: the Ray Train job failed"):
        run_mcl(cfg, progress=False, hooks=RunHooks(fault=fault))
    assert marker.exists()
    assert not list((tmp_path / "stages").glob("*/_COMPLETE.json"))  # nothing looks finished
    # the driver never got a finished stage, so only the live callback can have written these
    assert [step for step, _ in epoch_losses(tmp_path / cfg.name / "tensorboard")] == [1, 2]
    resumed = run_mcl(cfg, progress=False)  # the same experiment again
    stage = resumed.stages[0]
    assert stage.reused["stage"] is False
    metrics = json.loads((tmp_path / cfg.name / "stage_1" / "metrics.json").read_text())
    assert metrics["resumed_after_epoch"] == 2  # epochs 1-2 came from the checkpoint
    assert [h["epoch"] for h in stage.history] == [1, 2, 3]
    # the failed attempt's epochs were already on TensorBoard (written live); the resumed job added epoch 3
    assert [step for step, _ in epoch_losses(tmp_path / cfg.name / "tensorboard")] == [1, 2, 3]


def test_worker_death_is_restarted_from_the_latest_checkpoint(tmp_path, data_root):
    marker = tmp_path / "killed"
    cfg = config(tmp_path, data_root, "mcl.stages=1", "train.epochs=3", "ray.max_failures=1")
    result = run_mcl(cfg, progress=False, hooks=RunHooks(fault={"epoch": 1, "rank": 1, "marker": str(marker)}))
    assert marker.read_text().startswith("killed rank 1 after epoch 1")
    metrics = json.loads((tmp_path / cfg.name / "stage_1" / "metrics.json").read_text())
    assert metrics["resumed_after_epoch"] == 1
    assert [h["epoch"] for h in result.stages[0].history] == [1, 2, 3]  # no finished epoch lost or repeated


def test_a_dead_clustering_actor_fails_at_once_naming_it_and_keeps_the_trained_stage(tmp_path, data_root):
    marker = tmp_path / "actor-killed"
    cfg = config(tmp_path, data_root, "mcl.stages=2", "train.epochs=1", "ray.max_failures=2")
    t0 = time.monotonic()
    with pytest.raises(TrainingError, match="the clustering actor died"):
        run_mcl(cfg, progress=False, hooks=RunHooks(fault={"kill_clustering_actor": True, "marker": str(marker)}))
    assert marker.exists()
    histories = list((tmp_path / "stages").glob("*/history.json"))  # stage 1 was trained and committed once
    assert len(histories) == 1 and [h["epoch"] for h in json.loads(histories[0].read_text())] == [1]
    again = run_mcl(cfg, progress=False)  # a fresh actor: the stage is reused, only the clustering is redone
    assert again.stages[0].reused == {"stage": True, "clusters": False} and len(again.stages) == 2
    assert time.monotonic() - t0 < 600


def test_nan_loss_stops_with_stage_epoch_and_step(tmp_path, data_root):
    cfg = config(tmp_path, data_root, "mcl.stages=1", "objective.temperature=1e-45")
    with pytest.raises(TrainingError, match=r"stage 1, epoch 1, step 1: loss is nan"):
        run_mcl(cfg, progress=False)


def test_concurrent_requests_for_one_stage_build_it_once(tmp_path):
    entry = ArtifactStore(str(tmp_path)).stage("shared")
    builds, outcomes = [], []

    def request(name):
        with stage_lease("shared", entry.is_complete, poll_s=0.2) as must_build:
            if must_build:
                builds.append(name)
                time.sleep(1.0)  # "training"
                entry.commit({"by": name})
            outcomes.append((name, must_build))

    threads = [threading.Thread(target=request, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(builds) == 1 and entry.meta()["by"] == builds[0]
    assert sorted(m for _, m in outcomes) == [False, False, True]


def test_cli_trains_on_ray_by_default_with_relative_paths_and_local_reuses_it(tmp_path, data_root, capsys, monkeypatch):
    # Ray Train workers do not run in the driver's directory: relative paths must still land here
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(data_root)
    one_worker = [a for a in ENGINE if a != "train.workers=2"]  # --local runs one process
    args = [*TINY, *one_worker, "mcl.stages=1", "train.epochs=1", "data.root=data"]
    assert main(["train", "--quiet", *args, "--output", "runs"]) == 0
    out = capsys.readouterr().out
    assert "integrated" in out
    assert list((tmp_path / "runs" / "stages").glob("*/_COMPLETE.json"))
    on_ray = json.loads((tmp_path / "runs" / "mcl" / "stage_1" / "metrics.json").read_text())
    assert on_ray["reused"]["stage"] is False
    # the same experiment with --local trains nothing: it finds the stage the Ray run stored
    assert main(["train", "--quiet", "--local", *args, "name=local-after-ray", "--output", "runs"]) == 0
    local = json.loads((tmp_path / "runs" / "local-after-ray" / "stage_1" / "metrics.json").read_text())
    assert local["reused"]["stage"] is True and local["keys"]["stage"] == on_ray["keys"]["stage"]
    assert local["integrated_eval"] == on_ray["integrated_eval"]


def test_a_ray_run_reuses_the_stages_and_clustering_of_a_local_run(tmp_path, data_root):
    """One stage plan, two executors, one layout: a Ray run after a local one trains nothing (the reverse is
    checked by the CLI test above, on a stage the Ray run trained)."""
    cfg = tiny_config(tmp_path, data_root, "eval.online_knn_every=0", "name=local-first")
    local = run_local(cfg, progress=False, tensorboard=False)
    on_ray = run_mcl(cfg.model_copy(update={"name": "ray-second"}), progress=False, tensorboard=False)
    assert [s.reused for s in local.stages] == [{"stage": False, "clusters": False}, {"stage": False, "clusters": None}]
    assert [s.reused for s in on_ray.stages] == [{"stage": True, "clusters": True}, {"stage": True, "clusters": None}]
    assert [s.keys for s in on_ray.stages] == [s.keys for s in local.stages]
    assert [s.integrated_eval for s in on_ray.stages] == [s.integrated_eval for s in local.stages]


CLIP = ["model.backbone=open_clip:mcl-tiny", "model.head=none", "objective.name=clip", "objective.temperature=0.07",
        "eval.mmvp=trifeature", "eval.mmvp_pairs=4", "eval.retrieval_samples=60"]


def test_two_stage_clip_runs_on_two_workers_and_scores_image_text(tmp_path, data_root):
    """Image-text MCL through the Ray engine: captions reach both ranks, both towers are stored, the run reports
    zero-shot, MMVP-format and retrieval scores per stage and integrated, and a rerun reuses everything. Joint
    clustering: the actor runs an image and a text k-means (K=4 each) over both ranks' shards and pairs them."""
    cfg = config(tmp_path, data_root, *CLIP, "train.batch_size=32", "mcl.cluster_on=joint")
    result = run_mcl(cfg, progress=False)
    assert [s.reused["stage"] for s in result.stages] == [False, False]
    state = torch.load(tmp_path / "stages" / result.stages[1].keys["stage"] / "encoder.pt", weights_only=True)
    assert any("token_embedding" in k for k in state) and any("visual" in k for k in state)
    assert result.stages[1].history[-1]["loss"] < result.stages[0].history[0]["loss"] + 1.0  # finite, trained
    final = result.stages[-1].integrated_eval
    for attribute in ("shape", "texture", "color"):
        assert set(final[attribute]) == {"knn", "linear", "zeroshot", "mmvp"}
    assert 0.0 <= final["mmvp"]["pairs"] <= 1.0 and set(final["retrieval"]) == {"i2t_r1", "t2i_r1"}
    assert (data_root / "cache" / "mmvp-trifeature-px16-pairs4-seed0" / "Questions.csv").is_file()
    clusters = tmp_path / "clusters" / result.stages[0].keys["clusters"]
    assert np.load(clusters / "centroids.npy").shape == (2, 4, 64)  # image and text centroids
    groups = np.load(clusters / "groups.npy")
    assert groups.shape == (240,) and 4 < len(np.unique(groups)) <= 16  # pairs of the two views' clusters
    again = run_mcl(cfg, progress=False)
    assert [s.reused["stage"] for s in again.stages] == [True, True]
    assert again.stages[-1].integrated_eval == final
