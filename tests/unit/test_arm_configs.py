"""The control arms' experiments, derived from the MCL experiment (no training)."""

from __future__ import annotations

from mcl_ray.plan.arms import ifm_config, long_config, member_config
from mcl_ray.plan.from_config import load_config, objective_spec


def test_the_ifm_arm_is_the_long_run_with_ifm_mixed_in():
    cfg = load_config(None, ["name=t", "mcl.stages=3", "train.epochs=4", "objective.regularizers=[{name: dimcl}]"])
    ifm = ifm_config(cfg)
    assert ifm.name == "t/ifm" and ifm.mcl.stages == 1 and ifm.train.epochs == 12 == long_config(cfg).train.epochs
    assert [(r.name, r.weight) for r in objective_spec(ifm, 0).regularizers] == [("dimcl", 0.1), ("ifm", 0.5)]
    own = load_config(None, ["mcl.stages=2", "objective.regularizers=[{name: ifm, epsilon: 0.05}]"])
    assert [r.epsilon for r in objective_spec(ifm_config(own), 0).regularizers] == [0.05]  # the experiment's own
    assert member_config(cfg, 2).objective.regularizers == cfg.objective.regularizers
