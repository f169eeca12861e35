"""Re-record tests/golden/tiny_local.{npz,json} on this machine (only when the machine, not the code, changed:
run it on a commit whose numbers are trusted, then check the new code against it with the e2e test).

    python tests/golden_record.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from golden_check import GOLDEN, machine  # noqa: E402
from mcl_ray.mcl.integration import integrate  # noqa: E402
from mcl_ray.plan.local import run_local  # noqa: E402
from tiny import stage_artifacts, tiny_config  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tiny_config(tmp, tmp / "data", "mcl.sampling=group_batches")
        result = run_local(cfg, progress=False)
        run_dir = tmp / cfg.name
        stages = [np.load(stage_artifacts(run_dir, k) / "test_backbone.npy") for k in (1, 2)]
        np.savez(GOLDEN / "tiny_local.npz", stage_1_test=stages[0], stage_2_test=stages[1],
                 integrated_test=integrate(stages),
                 groups_after_stage_1=np.load(stage_artifacts(run_dir, 1, "clusters") / "groups.npy"))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        cpu, capability, version, threads = machine()
        meta = {"recorded_with": f"commit {commit}, run_local on tests/tiny.py TINY (re-recorded: new machine)",
                "torch": version, "numpy": np.__version__, "cpu": cpu, "cpu_capability": capability,
                "torch_threads": threads,
                "integrated_eval": [s.integrated_eval for s in result.stages],
                "stage_eval": [s.stage_eval for s in result.stages],
                "losses": [[h["loss"] for h in s.history] for s in result.stages]}
        (GOLDEN / "tiny_local.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"recorded on {cpu} ({capability}), torch {version}, {threads} threads")


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
