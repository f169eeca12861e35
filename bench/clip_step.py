"""Per-step cost of an image-text (CLIP) stage on this machine, beside the image-only SimCLR step it replaces.

One training step = prepare the inputs (augment; the captions are tokenised once per stage, outside the step),
forward, backward, optimizer step, after_step, at the settings of the bundled CLIP study's local profile
(32-px captioned Trifeature, batch 256). Rows: SimCLR on timm's test_vit (two augmented views, the image study's
model), CLIP on open_clip:mcl-tiny (one view + its caption), and mcl-tiny's tokenisation of 2000 captions.
Ratios are against the SimCLR step, measured in the same run.

    python -m bench.clip_step            # 20 timed steps per row after 3 warm-up steps
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.common import format_table, write_result
from mcl_ray.data.augment import BatchAugment
from mcl_ray.data.registry import load_dataset
from mcl_ray.models.encoder import build_encoder
from mcl_ray.objectives.objective import build_objective
from mcl_ray.plan.from_config import augment_spec, build_config, model_spec, objective_spec
from mcl_ray.train.optim import build_optimizer

SETTINGS = {
    "simclr test_vit": {"model": {"backbone": "test_vit", "patch_size": 4, "proj_hidden_dim": 256, "proj_dim": 64},
                        "objective": {"name": "simclr", "temperature": 0.2}},
    "clip mcl-tiny": {"model": {"backbone": "open_clip:mcl-tiny", "head": "none", "patch_size": 4},
                      "objective": {"name": "clip", "temperature": 0.07}},
}


def step_seconds(cfg, images, captions, batch: int, steps: int, warmup: int) -> list[float]:
    torch.manual_seed(0)
    encoder = build_encoder(model_spec(cfg))
    objective = build_objective(objective_spec(cfg, 0), encoder)
    optimizer = build_optimizer(objective, cfg.train)
    augment = BatchAugment(augment_spec(cfg))
    tokens = encoder.backbone.tokenize(captions) if objective.needs_captions else None
    gen = torch.Generator().manual_seed(0)
    times = []
    for step in range(warmup + steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        t0 = time.perf_counter()
        inputs = objective.prepare(images[idx], augment, None if tokens is None else tokens[idx])
        loss = objective(*inputs)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        objective.after_step()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    data = load_dataset("trifeature", "train", root="/tmp", image_size=32, size=2000, seed=0)
    images = torch.from_numpy(data.images)
    rows = []
    for name, overrides in SETTINGS.items():
        cfg = build_config({**overrides, "data": {"name": "trifeature", "image_size": 32},
                            "train": {"optimizer": "adamw", "lr": 1e-3, "batch_size": args.batch}})
        times = step_seconds(cfg, images, data.captions, args.batch, args.steps, warmup=3)
        rows.append({"setting": name, "median_ms": 1000 * statistics.median(times),
                     "p90_ms": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
                     "images_per_s": args.batch / statistics.median(times)})
    base = rows[0]["median_ms"]
    for row in rows:
        row["ratio_vs_simclr"] = row["median_ms"] / base
    encoder = build_encoder(model_spec(build_config({**SETTINGS["clip mcl-tiny"], "data": {"image_size": 32}})))
    t0 = time.perf_counter()
    encoder.backbone.tokenize(data.captions)
    tokenize_s = time.perf_counter() - t0
    print(format_table(rows))
    print(f"tokenising {len(data.captions)} captions once per stage: {tokenize_s:.2f} s")
    write_result("clip_step", {"batch": args.batch, "image_size": 32, "steps": args.steps, "rows": rows,
                               "tokenize_2000_captions_s": tokenize_s})


if __name__ == "__main__":
    main()
