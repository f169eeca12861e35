"""Where stage outputs live: content-addressed entries on any pyarrow filesystem, committed by a marker."""

from mcl_ray.store.artifacts import ArtifactStore, Entry, open_store
from mcl_ray.store.keys import cluster_key, stage_key

__all__ = ["ArtifactStore", "Entry", "open_store", "cluster_key", "stage_key"]
