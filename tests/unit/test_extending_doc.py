"""docs/extending.md's regulariser example is real code: registered from the snippet, it trains in an objective."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def test_the_documented_regularizer_registers_and_mixes_into_simclr():
    snippet = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert '@REGULARIZERS.register("uniformity")' in snippet
    code = snippet + """
import torch, torch.nn as nn
from mcl_ray.objectives import build_objective
from mcl_ray.plan.from_config import build_config, objective_spec

class Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone, self.projector, self.proj_dim = nn.Linear(6, 5), nn.Linear(5, 4), 4
    def forward(self, x):
        h = self.backbone(x)
        return h, self.projector(h)

spec = objective_spec(build_config({"objective": {"regularizers": [{"name": "uniformity", "weight": 0.05}]}}), 0)
out = build_objective(spec, Enc())(torch.randn(8, 6), torch.randn(8, 6), groups=None)
out["loss"].backward()
print(sorted(out), spec.regularizers[0].t, bool(torch.isfinite(out["loss"])))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "['loss', 'method', 'reg/uniformity'] 2.0 True"
