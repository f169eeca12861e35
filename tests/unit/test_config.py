"""Config loading, overrides and the error messages users see for bad input."""

from __future__ import annotations

import pytest

from mcl_ray.config import load_config as load_structure
from mcl_ray.config import loader, parse_overrides
from mcl_ray.plan.from_config import load_config
from mcl_ray.errors import ConfigError


def test_defaults_validate():
    cfg = load_config(check_names=False)
    assert cfg.mcl.stages == 3 and cfg.objective.temperature == 0.2


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("mcl: {stages: 2, clusters: 7}\ntrain: {epochs: 3}\n")
    cfg = load_config(path, ["stages=4", "objective.temperature=0.5", "train.batch_size=64"])
    assert cfg.mcl.stages == 4  # override wins over the file
    assert cfg.mcl.clusters == 7 and cfg.train.epochs == 3
    assert cfg.objective.temperature == 0.5 and cfg.train.batch_size == 64


def test_override_values_parse_as_yaml():
    assert parse_overrides(["mcl.clusters=[10,20]", "data.download=false", "name=x"]) == {
        "mcl": {"clusters": [10, 20]}, "data": {"download": False}, "name": "x",
    }


@pytest.mark.parametrize(
    "override, needle",
    [
        (["objective.temprature=0.1"], "did you mean 'objective.temperature'"),
        (["mcl.stagse=2"], "did you mean 'mcl.stages'"),
        (["objective.temperature=0"], "objective.temperature"),
        (["objective.temperature=-1"], "greater than 0"),
        (["mcl.clusters=1"], "mcl.clusters"),
        (["mcl.clusters=[10,1]", "mcl.stages=3"], ">= 2"),
        (["mcl.stages=3", "mcl.clusters=[10]"], "stages - 1 = 2"),
        (["mcl.temperatures=[0.1]"], "one value per stage"),
        (["train.batch_size=3", "train.workers=2"], "too small for 2 workers"),
        (["train.epochs=abc"], "train.epochs"),
        (["data.name=cifar11"], "unknown data set 'cifar11'"),
        (["augment.crop_scale=[0.8,0.2]"], "augment.crop_scale"),
        (["augment.hflip=1.5"], "augment.hflip"),
        (["train.optimizer=adamx"], "train.optimizer: timm has no optimizer 'adamx'"),
        (["model.head=simcrl"], "model.head: unknown projection head 'simcrl' (did you mean 'simclr'?)"),
        (["objective.name=mocco"], "did you mean 'moco'"),
        (["name=../escape"], "name: '../escape' is not a safe folder name"),
        (["name=''"], "name: '' is not a safe folder name"),
        (["name=/tmp/abs"], "not a safe folder name"),
        (["name=runs/../../x"], "not a safe folder name"),
        (["mcl.stages=2", "mcl.clusters=6000"], "mcl.clusters: 6000 clusters but only 5000 training images"),
        (["train.epochs=true"], "train.epochs: expected a number, got true"),
        (["data.train_size=1000000000.0"], "data.train_size: expected an integer"),
        (["data.train_size=1000000000", "mcl.clusters=2"], "data.train_size: 1000000000 generated images of 32x32 need"),
        (["objective.temperature=true"], "objective.temperature: expected a number"),
    ],
)
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=override)
    assert needle in str(exc.value)


def test_nested_run_names_are_accepted():
    for name in ("mcl", "mcl-seed0", "sweep/trials/trial_1a2b", "study/ensemble/trials/t_1/member2", "a.b=c+d@e"):
        assert load_config(overrides=[f"name={name}"]).name == name


def test_structure_alone_does_not_check_names():
    """mcl_ray.config checks types and ranges only (no registry, no torch); names are the plan layer's job."""
    assert load_structure(overrides=["model.backbone=resnet18x", "data.name=cifar11"]).data.name == "cifar11"
    with pytest.raises(ConfigError, match="mcl.stages"):
        load_structure(overrides=["mcl.stages=0"])


def test_all_name_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["model.backbone=resnet18x", "data.name=cifar11", "objective.temprature=0.3"])
    text = str(exc.value)
    assert "model.backbone" in text and "data.name" in text and "objective.temprature" in text


def test_unknown_backbone_suggests_timm_names():
    with pytest.raises(ConfigError, match=r"model.backbone.*resnet18"):
        load_config(overrides=["model.backbone=resnet18x"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mcl: {stages: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text("mcl: {stages: 3}\ntrain: {epochs: 5}\nmcl: {clusters: 4}\n")
    with pytest.raises(ConfigError, match="key 'mcl' appears twice"):
        load_config(twice)
    anchors = tmp_path / "anchors.yaml"  # merge keys are not duplicates: the override wins, as in YAML
    anchors.write_text("base: &b {stages: 3, clusters: 4}\nmcl:\n  <<: *b\n  clusters: 6\n")
    assert loader.read_yaml(anchors)["mcl"] == {"stages": 3, "clusters": 6}
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_config(tmp_path / "list.yaml")
    from mcl_ray.study import load_study

    with pytest.raises(ConfigError, match="study config .*list.yaml: expected a mapping"):
        load_study(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="study config .*bad.yaml: invalid YAML"):
        load_study(bad)


def test_malformed_override():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["stages"])


def test_per_stage_lists():
    cfg = load_config(overrides=["mcl.stages=3", "mcl.clusters=[4,8]", "mcl.temperatures=[0.1,0.2,0.3]"])
    assert [cfg.mcl.clusters_after(s) for s in range(2)] == [4, 8]
    assert [cfg.temperature(s) for s in range(3)] == [0.1, 0.2, 0.3]


def test_pretrain_split_checked_against_the_data_set():
    assert load_config(overrides=["data.name=stl10", "data.pretrain_split=unlabeled"]).data.pretrain_split == "unlabeled"
    with pytest.raises(ConfigError, match="data.pretrain_split: trifeature has splits train, test, not 'unlabeled'"):
        load_config(overrides=["data.pretrain_split=unlabeled"])
