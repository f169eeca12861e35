"""Who is training which stage right now: a named Ray actor hands out expiring leases on stage keys.

Two sweep trials that need the same stage at the same time must not both train it (wasted GPU hours) or
both write it (corrupt entry). The first to ask gets the lease and heartbeats while its job runs; the
others wait until the stage entry is committed and reuse it. A lease whose holder stops heartbeating
(driver killed) expires, so a crashed trial never blocks the study.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Callable, Iterator

import ray

log = logging.getLogger("mcl_ray")

LEASE_ACTOR = "mcl_ray_stage_leases"
NAMESPACE = "mcl_ray"


class StageLeases:
    """key -> (owner, expiry). Ray runs actor methods one at a time, so acquire is atomic."""

    def __init__(self) -> None:
        self.leases: dict[str, tuple[str, float]] = {}

    def acquire(self, key: str, owner: str, ttl_s: float) -> str | None:
        """None when `owner` now holds the lease, else the current holder."""
        now = time.time()
        holder = self.leases.get(key)
        if holder is None or holder[0] == owner or holder[1] < now:
            self.leases[key] = (owner, now + ttl_s)
            return None
        return holder[0]

    def renew(self, key: str, owner: str, ttl_s: float) -> bool:
        holder = self.leases.get(key)
        if holder is None or holder[0] != owner:
            return False
        self.leases[key] = (owner, time.time() + ttl_s)
        return True

    def release(self, key: str, owner: str) -> None:
        if self.leases.get(key, ("",))[0] == owner:
            del self.leases[key]


def lease_actor():
    """The cluster-wide lease actor (created on first use, lives as long as the Ray cluster)."""
    return ray.remote(num_cpus=0)(StageLeases).options(
        name=LEASE_ACTOR, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
    ).remote()


@contextlib.contextmanager
def stage_lease(
    key: str,
    is_done: Callable[[], bool],
    *,
    ttl_s: float = 30.0,
    poll_s: float = 2.0,
    label: str = "",
) -> Iterator[bool]:
    """Yield True if the caller must build the stage (it holds the lease), False once someone else built it."""
    leases = lease_actor()
    owner = uuid.uuid4().hex
    waited_since, last_note = None, 0.0
    while True:
        if is_done():
            yield False
            return
        holder = ray.get(leases.acquire.remote(key, owner, ttl_s))
        if holder is None:
            break
        now = time.monotonic()
        waited_since = waited_since or now
        if now - last_note > 30:
            log.info("%s: stage %s is being trained by another run; waiting to reuse it", label, key[:12])
            last_note = now
        time.sleep(poll_s)
    if is_done():  # finished between our check and the acquire
        ray.get(leases.release.remote(key, owner))
        yield False
        return
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl_s / 4):
            leases.renew.remote(key, owner, ttl_s)

    thread = threading.Thread(target=heartbeat, daemon=True, name=f"lease-{key[:8]}")
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join(timeout=5)
        ray.get(leases.release.remote(key, owner))
