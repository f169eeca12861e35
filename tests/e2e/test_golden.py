"""Behaviour preserved: the tiny local experiment reproduces embeddings recorded before the stage-plan refactor.

tests/golden/tiny_local.{npz,json} were written by the old `run_local` (commit 8e925e6). Training is
bitwise deterministic on one machine, so where this machine matches the recording (CPU model, torch, torch
threads) the check is exact; elsewhere floating-point kernels differ, so the test skips and says why.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from mcl_ray.mcl.integration import integrate
from mcl_ray.plan.local import run_local
from tiny import stage_artifacts, tiny_config

GOLDEN = Path(__file__).parents[1] / "golden"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


@pytest.mark.slow
def test_tiny_local_run_matches_the_recorded_embeddings(tmp_path, data_root):
    meta = json.loads((GOLDEN / "tiny_local.json").read_text())
    golden = np.load(GOLDEN / "tiny_local.npz")
    same_machine = (cpu_model(), torch.__version__, torch.get_num_threads()) == (
        meta["cpu"], meta["torch"], meta["torch_threads"])
    if not same_machine:
        pytest.skip(f"recorded on {meta['cpu']} / torch {meta['torch']} / {meta['torch_threads']} threads; "
                    f"this is {cpu_model()} / {torch.__version__} / {torch.get_num_threads()}")
    result = run_local(tiny_config(tmp_path, data_root), progress=False, tensorboard=False)
    run_dir = tmp_path / "mcl"
    stages = [np.load(stage_artifacts(run_dir, k) / "test_backbone.npy") for k in (1, 2)]
    groups = np.load(stage_artifacts(run_dir, 1, "clusters") / "groups.npy")
    np.testing.assert_array_equal(stages[0], golden["stage_1_test"])
    np.testing.assert_array_equal(stages[1], golden["stage_2_test"])
    np.testing.assert_array_equal(integrate(stages), golden["integrated_test"])
    np.testing.assert_array_equal(groups, golden["groups_after_stage_1"])
    assert [s.integrated_eval for s in result.stages] == meta["integrated_eval"]
    assert [s.stage_eval for s in result.stages] == meta["stage_eval"]
    assert [[h["loss"] for h in s.history] for s in result.stages] == meta["losses"]
