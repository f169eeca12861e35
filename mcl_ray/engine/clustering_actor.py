"""Between-stage clustering as a Ray actor: k-means on a bounded sample, labels assembled from the workers.

The Train workers embed their own shard of the training set, send the actor a bounded random sample,
receive the centroids, assign their shard in chunks and send back only the labels. So the actor's memory
is bounded by `mcl.kmeans_max_points` x d floats plus N integer labels, never N x d embeddings: a
CC12M-sized data set clusters on one ordinary node. On GPU clusters the actor holds a GPU and faiss trains
there; on CPUs its faiss threads equal the CPUs it holds.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

import numpy as np

from mcl_ray.mcl.clustering import kmeans
from mcl_ray.mcl.groups import pair_views
from mcl_ray.plan.artifacts import publish_clusters
from mcl_ray.store.artifacts import ArtifactStore

log = logging.getLogger("mcl_ray")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ClusteringActor:
    """One clustering job at a time: begin -> add_sample (every rank) -> fit -> add_labels (every rank) -> finish.
    A job may cluster several views of the samples (joint: image and text embeddings), each with its own k-means;
    finish pairs their labels."""

    def __init__(self, threads: int = 1, use_gpu: bool = False):
        import faiss
        import torch

        self.threads = max(1, int(threads))
        self.use_gpu = use_gpu
        faiss.omp_set_num_threads(self.threads)
        torch.set_num_threads(self.threads)
        self.job: dict[str, Any] | None = None

    def begin(self, job_id: str, *, k: int, num_samples: int, world_size: int, seed: int, niter: int,
              views: int = 1) -> None:
        self.job = {
            "id": job_id, "k": k, "n": num_samples, "world": world_size, "seed": seed, "niter": niter, "views": views,
            "samples": {}, "labels": np.full((views, num_samples), -1, np.int64), "sq_dist": 0.0,
            "centroids": [None] * views, "t0": time.perf_counter(),
        }

    def _job(self, job_id: str) -> dict[str, Any]:
        if self.job is None or self.job["id"] != job_id:
            raise RuntimeError(f"clustering job {job_id!r} was not begun on this actor")
        return self.job

    def add_sample(self, job_id: str, rank: int, sample: np.ndarray, view: int = 0) -> int:
        job = self._job(job_id)
        job["samples"][view, rank] = sample  # a read-only object-store view: fit() concatenates (copies) once
        return len(sample)

    def fit(self, job_id: str) -> None:
        """Train each view's k-means on the union of the ranks' samples (in rank order, so it is deterministic)."""
        job = self._job(job_id)
        for view in range(job["views"]):
            missing = [r for r in range(job["world"]) if (view, r) not in job["samples"]]
            if missing:
                raise RuntimeError(f"clustering job {job_id}: ranks {missing} sent no sample (view {view})")
            train = np.concatenate([job["samples"].pop((view, r)) for r in range(job["world"])])
            km = kmeans(train, job["k"], seed=job["seed"], niter=job["niter"], use_gpu=self.use_gpu,
                        num_threads=self.threads)
            job["centroids"][view] = km.centroids
            job["train_points"] = len(train)

    def centroids(self, job_id: str, view: int = 0) -> np.ndarray:
        return self._job(job_id)["centroids"][view]

    def add_labels(self, job_id: str, start: int, labels: np.ndarray, sq_dist_sum: float, view: int = 0) -> None:
        job = self._job(job_id)
        job["labels"][view, start : start + len(labels)] = labels
        job["sq_dist"] += float(sq_dist_sum)

    def finish(
        self,
        job_id: str,
        *,
        store_root: str,
        cluster_key: str,
        previous_clusters: str | None,
        attributes: dict[str, np.ndarray] | None,
        meta: dict[str, Any],
        min_group_size: int = 0,
    ) -> dict[str, Any]:
        """Combine with the earlier stages' groups, persist labels/centroids/groups/stats and commit the entry."""
        job = self._job(job_id)
        unassigned = int((job["labels"] < 0).any(axis=0).sum())
        if unassigned:
            raise RuntimeError(f"clustering job {job_id}: {unassigned} of {job['n']} samples got no label")
        views = job["views"]
        labels = pair_views(list(job["labels"]), job["k"])
        centroids = job["centroids"][0] if views == 1 else np.stack(job["centroids"])
        info = publish_clusters(
            ArtifactStore(store_root), cluster_key, labels=labels, centroids=centroids, k=job["k"] ** views,
            previous_clusters=previous_clusters, attributes=attributes, meta=meta, min_group_size=min_group_size,
            info={
                "inertia": job["sq_dist"],
                "train_points": job["train_points"],
                "seconds": time.perf_counter() - job["t0"],
                "actor_peak_rss_mb": peak_rss_mb(),
            },
        )
        self.job = None
        return info

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()
