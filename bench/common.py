"""Shared helpers for benchmarks: machine info, a printed table and a JSON result file."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
import argparse
from typing import Any, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (README claims cite these)."""
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "cuda": torch.cuda.is_available(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table (floats to 4 significant digits)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_result(name: str, payload: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write bench/results/<name>.json (<prefix><name>.json with MCL_BENCH_PREFIX set) with the machine info attached."""
    name = os.environ.get("MCL_BENCH_PREFIX", "") + name  # gpu_check.sh: GPU figures beside the CPU ones
    out_dir = Path(results_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    body = {"benchmark": name, "machine": machine_info(), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=False, default=float) + "\n")
    os.replace(tmp, path)
    return path


def add_run_args(p: argparse.ArgumentParser, *, seeds: list[int], stages: int, epochs: int, train_size: int,
                 workdir: str, name: str) -> None:
    """The settings the side-by-side training benchmarks share (small Trifeature-style runs, test_resnet)."""
    p.add_argument("--config", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=seeds)
    p.add_argument("--stages", type=int, default=stages)
    p.add_argument("--epochs", type=int, default=epochs, help="epochs per stage")
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--backbone", default="test_resnet")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--train-size", type=int, default=train_size)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--data-root", default="~/.cache/mcl-ray/data")
    p.add_argument("--workdir", default=workdir)
    p.add_argument("--name", default=name)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (not a result)")
    p.add_argument("--verbose", action="store_true")


def run_overrides(args: argparse.Namespace) -> list[str]:
    """Those settings as config overrides: the same for every arm and variant, so equal stages share their keys."""
    return [
        f"output_dir={args.workdir}", f"data.root={args.data_root}", f"data.train_size={args.train_size}",
        f"data.test_size={args.test_size}", f"data.image_size={args.image_size}", f"model.backbone={args.backbone}",
        "model.cifar_stem=false", f"mcl.stages={args.stages}", f"mcl.clusters={args.clusters}",
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
        f"objective.temperature={args.temperature}", "eval.online_knn_every=0", "train.log_every=100000",
        "train.device=cpu",
    ]
