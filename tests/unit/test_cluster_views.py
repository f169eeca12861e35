"""Clustering views of image-text runs: text, and joint (image x text clusters paired)."""

from __future__ import annotations

import numpy as np
import pytest

from mcl_ray.errors import ConfigError
from mcl_ray.mcl.groups import pair_views
from mcl_ray.mcl.spec import ClusteringSpec
from mcl_ray.plan.from_config import build_config, check_experiment, stage_specs


def test_paired_views_share_a_label_only_when_they_share_both_clusters():
    image, text = np.array([0, 0, 1, 1, 2]), np.array([1, 0, 1, 1, 0])
    labels = pair_views([image, text], 3)
    assert labels.tolist() == [1, 0, 4, 4, 6]
    assert pair_views([image], 3).tolist() == image.tolist()


def test_views_and_group_counts_follow_cluster_on():
    assert ClusteringSpec(k=3, on="joint").views == ("backbone", "text")
    assert ClusteringSpec(k=3, on="joint").groups_per_step == 9
    assert ClusteringSpec(k=3, on="text").groups_per_step == 3


@pytest.mark.parametrize("on", ["text", "joint"])
def test_text_views_need_an_image_text_objective(on):
    with pytest.raises(ConfigError, match="mcl.cluster_on"):
        check_experiment(build_config({"mcl": {"cluster_on": on}, "model": {"backbone": "test_resnet"}}))
    cfg = build_config({"mcl": {"cluster_on": on, "stages": 2}, "objective": {"name": "clip"},
                        "model": {"backbone": "open_clip:mcl-tiny", "head": "none"}})
    check_experiment(cfg)
    assert stage_specs(cfg)[0].clustering.on == on
