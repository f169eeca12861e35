"""The control arms run through the local executor: the ensemble reuses MCL's stage 1 and integrates its
members exactly like MCL's stages; the long run trains S times the epochs."""

from __future__ import annotations

import numpy as np
import pytest

from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.mcl.integration import integrate
from mcl_ray.plan.arms import arm_records, long_config, member_config
from mcl_ray.plan.evaluation import evaluate
from mcl_ray.plan.from_config import data_spec, eval_spec
from mcl_ray.plan.local import run_local
from tiny import tiny_config

pytestmark = pytest.mark.slow


def test_ensemble_and_long_arms(tmp_path, data_root):
    cfg = tiny_config(tmp_path, data_root, "eval.online_knn_every=0", "train.epochs=1", "name=trial")
    data = load_experiment_data(data_spec(cfg))
    run = lambda c: run_local(c, data=data, progress=False, tensorboard=False).stages  # noqa: E731
    mcl = list(arm_records(cfg, "mcl", run, data))
    ensemble = list(arm_records(cfg, "ensemble", run, data))
    long = list(arm_records(cfg, "long", run, data))
    ifm = list(arm_records(cfg, "ifm", run, data))

    assert [r.stage for r in ensemble] == [1, 2] and [r.stage for r in long] == [1]
    assert ensemble[0].keys["stage"] == mcl[0].keys["stage"] and ensemble[0].reused["stage"]  # MCL's stage 1
    assert ensemble[1].keys["stage"] not in (mcl[0].keys["stage"], mcl[1].keys["stage"])
    assert member_config(cfg, 1).seed == cfg.seed + 1000 and member_config(cfg, 1).mcl.stages == 1
    assert long_config(cfg).train.epochs == 2 and len(long[0].history) == 2
    assert len(ifm) == 1 and "loss/reg/ifm" in ifm[0].history[-1]  # the long run with IFM mixed in
    assert ifm[0].keys["stage"] != long[0].keys["stage"]
    # the ensemble's step 2 is its two members integrated like MCL's stages, scored like MCL's
    parts = [np.load(f"{r.keys['stage_uri']}/{split}_backbone.npy") for r in ensemble for split in ("probe", "test")]
    expected = evaluate(eval_spec(cfg), integrate(parts[0::2]), integrate(parts[1::2]), data)
    assert ensemble[1].integrated_eval == expected
    assert set(expected) == {"shape", "texture", "color"}
