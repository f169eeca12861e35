"""Resource planning for a stage, on CPU and GPU clusters, checked offline (no Ray cluster, no GPU needed).

The GPU branches cannot run on the CPU-only CI machine; these tests pin what they would ask Ray for.
"""

from __future__ import annotations

import os

import pytest

from mcl_ray.config import load_config
from mcl_ray.engine.runtime import local_cpus_needed, plan_resources
from mcl_ray.engine.stage_job import scaling_config
from mcl_ray.errors import ConfigError


def cfg(*overrides: str):
    return load_config(overrides=list(overrides))


def test_auto_on_a_gpu_cluster_trains_on_gpus_and_clusters_on_one():
    r = plan_resources(cfg("train.workers=4"), cluster_gpus=4.0)
    assert r.use_gpu and r.gpus_per_worker == 1.0 and r.clustering_gpus == 1.0
    assert r.gpus == 5.0  # 4 workers + the clustering actor
    scaling = scaling_config(r)
    assert scaling.num_workers == 4 and scaling.use_gpu
    assert scaling.resources_per_worker == {"CPU": 1.0, "GPU": 1.0}


def test_auto_on_a_cpu_cluster_asks_for_no_gpu_anywhere():
    r = plan_resources(cfg("train.workers=2", "ray.cpus_per_worker=3", "ray.clustering_cpus=2"), cluster_gpus=0.0)
    assert not r.use_gpu and r.gpus == 0.0 and r.clustering_gpus == 0.0
    assert r.cpus == 2 * 3 + 2 and r.worker_threads == 3
    assert scaling_config(r).resources_per_worker == {"CPU": 3.0}


def test_fractional_gpus_and_a_cpu_clustering_actor_on_a_gpu_cluster():
    r = plan_resources(cfg("train.workers=2", "ray.gpus_per_worker=0.5", "ray.clustering_gpus=0"), cluster_gpus=1.0)
    assert r.use_gpu and r.gpus == 1.0 and r.clustering_gpus == 0.0
    assert scaling_config(r).resources_per_worker["GPU"] == 0.5


def test_train_device_cpu_keeps_auto_training_on_cpu_on_a_gpu_cluster():
    r = plan_resources(cfg("train.device=cpu"), cluster_gpus=2.0)
    assert not r.use_gpu and "GPU" not in scaling_config(r).resources_per_worker
    assert r.clustering_gpus == 1.0  # faiss can still use a GPU for k-means


def test_mcl_kmeans_gpu_means_the_same_on_ray_as_locally():
    assert plan_resources(cfg("mcl.kmeans_gpu=false"), cluster_gpus=2.0).clustering_gpus == 0.0  # faiss on CPU
    assert plan_resources(cfg("mcl.kmeans_gpu=true"), cluster_gpus=2.0).clustering_gpus == 1.0


def test_auto_threads_leave_the_split_to_the_worker():
    r = plan_resources(cfg(), cluster_gpus=0.0)
    assert r.cpus_per_worker == 1.0 and r.worker_threads is None


@pytest.mark.parametrize("overrides, gpus, message", [
    (["ray.use_gpu=true"], 0.0, "ray.use_gpu: true, but the Ray cluster has no GPUs"),
    (["ray.use_gpu=true", "train.device=cpu"], 2.0, "train.device: 'cpu' contradicts ray.use_gpu"),
    (["ray.clustering_gpus=2"], 1.0, "ray.clustering_gpus: 2.0 requested, the cluster has 1.0"),
    (["mcl.kmeans_gpu=true"], 0.0, "mcl.kmeans_gpu: true, but the Ray cluster has no GPUs"),
])
def test_impossible_gpu_requests_are_config_errors(overrides, gpus, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        plan_resources(cfg(*overrides), cluster_gpus=gpus)


def test_a_local_instance_declares_enough_cpus_for_every_concurrent_run():
    c = cfg("train.workers=3", "ray.clustering_cpus=1")
    assert local_cpus_needed(c) == max(os.cpu_count() or 1, 4)
    assert local_cpus_needed(c, trials=4, trial_cpus=1) == max(os.cpu_count() or 1, 20)


def test_the_local_ray_auth_token_is_made_owner_only(tmp_path):
    from mcl_ray.engine.runtime import make_private

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)  # what Ray 2.60 leaves
    assert make_private(token) is True
    assert token.stat().st_mode & 0o777 == 0o600
    assert make_private(token) is False  # already private: untouched
    assert make_private(tmp_path / "missing") is False
