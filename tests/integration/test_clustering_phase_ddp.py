"""Two-process (gloo) check that a dead clustering actor seen by one worker ends the phase on every worker.

In CI a plain barrier after the phase left the other worker waiting for the process group's timeout (30 min)
when only rank 0 saw the actor die."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import ray.exceptions
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mcl_ray.engine.worker import PeerLostClusteringActor, clustering_phase

from ddp_helpers import free_port  # noqa: E402

pytestmark = pytest.mark.slow

WORLD = 2


CASES = {None: ["ok", "ok"], 0: ["actor error", "peer lost"], 1: ["peer lost", "actor error"]}


def _phase(rank: int, dying_rank: int | None) -> tuple[str, bool, float]:
    calls = []

    def work():
        calls.append(rank)
        if rank == dying_rank:
            raise ray.exceptions.RayActorError()

    t0 = time.monotonic()
    try:
        clustering_phase(WORLD, torch.device("cpu"), work)
        outcome = "ok"
    except ray.exceptions.RayActorError:
        outcome = "actor error"
    except PeerLostClusteringActor:
        outcome = "peer lost"
    return outcome, calls == [rank], time.monotonic() - t0


def _worker(rank: int, port: int, results) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        for dying_rank in CASES:  # one process group for all cases: spawning is the slow part
            results[(dying_rank, rank)] = _phase(rank, dying_rank)
    finally:
        dist.destroy_process_group()


def test_a_dead_actor_on_one_worker_ends_the_phase_on_all():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(free_port(), results), nprocs=WORLD, join=True)
        results = dict(results)
    for dying_rank, expected in CASES.items():
        got = [results[(dying_rank, r)] for r in range(WORLD)]
        assert [outcome for outcome, _, _ in got] == expected, dying_rank
        assert all(ran for _, ran, _ in got)  # every worker did its own part of the phase
        assert max(seconds for _, _, seconds in got) < 30  # nobody waited for a timeout
