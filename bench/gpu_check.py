"""The GPU paths, checked in one short call on a machine with a CUDA device (`bench/gpu_check.sh` runs this).

  1. one MCL job on Ray: 2 stages, 1 Train worker on the GPU with bf16 autocast, the clustering actor with faiss on
     the GPU when the installed faiss has GPU support (else it says so and clusters on the CPU);
  2. training throughput of the same stage in one process, fp32 vs bf16, and the memory-mapped source vs in memory.
Writes bench/results/gpu_check.json (machine info attached); prints a table. Under 8 minutes on one H200.

    python -m bench.gpu_check            # needs CUDA; exits 2 without it
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from bench.common import format_table, write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--backbone", default="resnet18")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check", file=sys.stderr)
        return 2
    from mcl_ray.mcl.clustering import faiss_gpu_available

    faiss_gpu = faiss_gpu_available()
    rows, out = [], {"faiss_gpu": faiss_gpu, "gpu": torch.cuda.get_device_name(0)}
    work = tempfile.mkdtemp(prefix="mcl-gpu-check-")
    base = [f"output_dir={work}", f"data.root={work}/data", f"data.train_size={args.images}", "data.test_size=2000",
            "data.image_size=32", f"model.backbone={args.backbone}", "mcl.stages=2", "mcl.clusters=10",
            f"train.epochs={args.epochs}", "train.batch_size=512", "train.device=cuda", "eval.online_knn_every=0",
            "train.log_every=100000"]

    # 1. the Ray job: GPU Train worker with bf16, the clustering actor on the GPU (half a GPU each, one device)
    from mcl_ray.engine.driver import run_mcl
    from mcl_ray.plan.from_config import load_config

    cfg = load_config(None, [*base, "name=gpu-ray", "train.amp=true", "ray.use_gpu=true", "ray.gpus_per_worker=0.5",
                             f"ray.clustering_gpus={0.5 if faiss_gpu else 0}", f"mcl.kmeans_gpu={'true' if faiss_gpu else 'false'}"])
    t0 = time.perf_counter()
    result = run_mcl(cfg, progress=False)
    wall = time.perf_counter() - t0
    history = result.stages[0].history
    out["ray_job"] = {
        "wall_s": wall, "stage1_images_per_s": float(np.median([h["images_per_s"] for h in history[1:] or history])),
        "clustering_s": (result.stages[0].cluster or {}).get("seconds"),
        "integrated_eval": result.stages[-1].integrated_eval,
    }
    rows.append({"check": "Ray job, 1 GPU worker, bf16", "images_per_s": out["ray_job"]["stage1_images_per_s"],
                 "note": f"clustering {out['ray_job']['clustering_s']:.1f} s on {'GPU' if faiss_gpu else 'CPU'} faiss; wall {wall:.0f} s"})

    # 2. one process: fp32 vs bf16, memory-mapped vs in memory (same batches)
    from mcl_ray.data.base import ImageSet
    from mcl_ray.data.experiment_data import load_experiment_data
    from mcl_ray.plan.from_config import data_spec, stage_specs
    from mcl_ray.train.stage import train_stage

    data = load_experiment_data(data_spec(cfg))
    mapped = data.pretrain
    memory = ImageSet(images=np.array(mapped.images), attributes=mapped.attributes, name="memory")
    speeds = {}
    for label, amp, images in (("fp32, memory-mapped", False, mapped), ("bf16, memory-mapped", True, mapped),
                               ("bf16, in memory", True, memory)):
        spec = stage_specs(load_config(None, [*base, "name=gpu-local", f"train.amp={str(amp).lower()}", "mcl.stages=1"]))[0]
        history = train_stage(spec, images).history
        speeds[label] = float(np.median([h["images_per_s"] for h in history[1:] or history]))
        rows.append({"check": f"one process, {label}", "images_per_s": speeds[label], "note": ""})
    out["one_process_images_per_s"] = speeds
    out["bf16_vs_fp32"] = speeds["bf16, memory-mapped"] / speeds["fp32, memory-mapped"]
    out["mapped_vs_memory"] = speeds["bf16, memory-mapped"] / speeds["bf16, in memory"]
    print(format_table(rows))
    print(f"bf16 / fp32: {out['bf16_vs_fp32']:.2f}x; memory-mapped / in memory: {out['mapped_vs_memory']:.3f}x")
    path = write_result("gpu_check", {"settings": vars(args), **out, "rows": rows, "cpus": os.cpu_count()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
