"""Test hooks a run accepts: kept out of the public signatures, passed in as one picklable object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunHooks:
    """fault: {'epoch', 'rank', 'marker'} kills that Train worker once after that epoch (the local executor
    raises KeyboardInterrupt there instead, as a Ctrl-C would); {'kill_clustering_actor': True, 'marker'} kills the
    Ray clustering actor once, just before the first clustering step;
    record_steps: a directory where every rank appends 'epoch step groups' lines per step (both executors)."""

    fault: dict | None = None
    record_steps: str | None = None


def step_recorder(path: str | None, stage: int, rank: int):
    """record_steps: append 'epoch step sorted-unique-groups' per step to a per-stage, per-rank file."""
    if not path:
        return None
    from pathlib import Path

    out = Path(path) / f"stage{stage + 1}_rank{rank}.txt"

    def on_step(epoch: int, step: int, groups) -> None:
        with out.open("a") as f:
            f.write(f"{epoch} {step} {','.join(map(str, sorted(set(groups.tolist()))))}\n")

    return on_step
