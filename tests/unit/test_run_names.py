"""A run name holds one experiment: a rerun resumes it, a different experiment under that name is refused."""

from __future__ import annotations

import pytest
import yaml

from mcl_ray.errors import ConfigError
from mcl_ray.plan.from_config import load_config
from mcl_ray.plan.sequence import check_run_name
from mcl_ray.store import ArtifactStore


def _config(tmp_path, *extra):
    return load_config(None, [f"output_dir={tmp_path}", "name=exp", *extra])


def test_a_run_name_holding_another_experiment_is_refused_naming_the_differences(tmp_path):
    cfg = _config(tmp_path)
    check_run_name(cfg)  # nothing there yet
    ArtifactStore(str(tmp_path)).run("exp").put_bytes("config.yaml", yaml.safe_dump(cfg.model_dump(mode="json")).encode())
    check_run_name(cfg)  # the same experiment again: it resumes
    check_run_name(_config(tmp_path, "train.log_every=7", "ray.max_failures=5", "train.device=cpu"))  # how, not what
    with pytest.raises(ConfigError, match=r"name: run 'exp' at .*exp holds a different experiment \(it differs in "
                                          r"mcl.clusters, seed\); choose another name"):
        check_run_name(_config(tmp_path, "seed=1", "mcl.clusters=4"))
    check_run_name(_config(tmp_path, "seed=1", "name=exp-seed1"))  # another name: fine


def test_a_config_written_before_a_field_existed_still_matches_at_the_fields_default(tmp_path):
    cfg = _config(tmp_path)
    old = cfg.model_dump(mode="json")
    del old["mcl"]["min_group_size"], old["data"]["decode"]  # as mcl-ray 0.2 wrote it
    ArtifactStore(str(tmp_path)).run("exp").put_bytes("config.yaml", yaml.safe_dump(old).encode())
    check_run_name(cfg)  # the new fields at their defaults: the same experiment
    check_run_name(_config(tmp_path, "data.decode_workers=0"))  # how images are read, not which
    with pytest.raises(ConfigError, match=r"differs in mcl.min_group_size\)"):
        check_run_name(_config(tmp_path, "mcl.min_group_size=5"))
