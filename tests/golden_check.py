"""Behaviour preserved: the tiny local experiment reproduces embeddings recorded before the stage-plan refactor.

tests/golden/tiny_local.{npz,json} were written by the old `run_local` (commit 8e925e6). Training is bitwise
deterministic on one machine, so where this machine matches the recording (CPU model, torch, torch threads)
the check is exact; elsewhere floating-point kernels differ and the caller's test is skipped, saying why.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from mcl_ray.mcl.integration import integrate
from tiny import stage_artifacts

GOLDEN = Path(__file__).parent / "golden"


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def machine() -> tuple[str, str, str, int]:
    """What bitwise results depend on: CPU model, the kernels torch picks for it (a cloud 'AMD EPYC' can be AVX2 or
    AVX-512), torch version, threads."""
    return cpu_model(), torch.backends.cpu.get_cpu_capability(), torch.__version__, torch.get_num_threads()


def check_golden(result, run_dir: Path) -> None:
    """`result`, `run_dir`: run_local of tests/tiny.py's TINY config (default name, 2 stages)."""
    meta = json.loads((GOLDEN / "tiny_local.json").read_text())
    here = machine()
    recorded = (meta["cpu"], meta.get("cpu_capability"), meta["torch"], meta["torch_threads"])
    if here != recorded:
        pytest.skip(f"golden embeddings recorded on {' / '.join(map(str, recorded))} (cpu, kernels, torch, threads); "
                    f"this is {' / '.join(map(str, here))} (tests/golden_record.py re-records on a trusted commit)")
    golden = np.load(GOLDEN / "tiny_local.npz")
    stages = [np.load(stage_artifacts(run_dir, k) / "test_backbone.npy") for k in (1, 2)]
    np.testing.assert_array_equal(stages[0], golden["stage_1_test"])
    np.testing.assert_array_equal(stages[1], golden["stage_2_test"])
    np.testing.assert_array_equal(integrate(stages), golden["integrated_test"])
    np.testing.assert_array_equal(np.load(stage_artifacts(run_dir, 1, "clusters") / "groups.npy"),
                                  golden["groups_after_stage_1"])
    assert [s.integrated_eval for s in result.stages] == meta["integrated_eval"]
    assert [s.stage_eval for s in result.stages] == meta["stage_eval"]
    assert [[h["loss"] for h in s.history] for s in result.stages] == meta["losses"]
