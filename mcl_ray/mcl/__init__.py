"""The MCL parts: between-stage clustering, combining stages' clusters, group batches, integration."""

from mcl_ray.mcl.cluster_stats import cluster_stats
from mcl_ray.mcl.clustering import KMeansResult, assign, kmeans
from mcl_ray.mcl.groups import combine_all, combine_labels, compact
from mcl_ray.mcl.integration import integrate
from mcl_ray.mcl.sampler import GroupBatchSampler, plan_summary

__all__ = [
    "GroupBatchSampler", "KMeansResult", "assign", "cluster_stats", "combine_all", "combine_labels",
    "compact", "integrate", "kmeans", "plan_summary",
]
