"""The MCL parts: between-stage clustering, combining stages' clusters, group batches, integration (loaded on use)."""

from mcl_ray._lazy import lazy_exports

_EXPORTS = {
    "cluster_stats": "mcl_ray.mcl.cluster_stats",
    "KMeansResult": "mcl_ray.mcl.clustering",
    "assign": "mcl_ray.mcl.clustering",
    "kmeans": "mcl_ray.mcl.clustering",
    "combine_all": "mcl_ray.mcl.groups",
    "combine_labels": "mcl_ray.mcl.groups",
    "compact": "mcl_ray.mcl.groups",
    "integrate": "mcl_ray.mcl.integration",
    "GroupBatchSampler": "mcl_ray.mcl.sampler",
    "plan_summary": "mcl_ray.mcl.sampler",
    "ClusteringSpec": "mcl_ray.mcl.spec",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
