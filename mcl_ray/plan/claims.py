"""Who is building which stage right now, decided by the storage itself (no Ray needed).

Two runs of the same experiment started together (two shells, two local Ray instances, two study drivers)
must not both train a stage: the second waits and reuses it. On local (and `file://`) storage a claim is an
exclusive `flock` on `<storage>/claims/<key>.lock`, held while the stage is built. The kernel releases it when
its holder exits, however it exits (Ctrl-C, kill -9, a crash), so there is no expiry to tune, no heartbeat and
no stale claim to break (breaking one races with whoever breaks it too). The lock files stay: removing one
while another process waits on it would let two processes lock different files. Object stores have no such
lock: there the Ray executor falls back to its lease actor (one Ray cluster) and the local executor warns that
concurrent runs are not serialised.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("mcl_ray")


@contextlib.contextmanager
def storage_claim(claims_dir: Path, key: str, is_done: Callable[[], bool], *, label: str = "",
                  poll_s: float = 2.0) -> Iterator[bool]:
    """Yield True when the caller must build `key` (it holds the claim), False once someone else built it."""
    claims_dir.mkdir(parents=True, exist_ok=True)
    path = claims_dir / f"{key}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        last_note = 0.0
        while True:
            if is_done():
                yield False
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if time.monotonic() - last_note > 30:
                holder = path.read_text(errors="replace").strip() or "another run"
                log.info("%s: stage %s is being built by %s; waiting to reuse it", label, key[:12], holder)
                last_note = time.monotonic()
            time.sleep(poll_s)
        os.ftruncate(fd, 0)  # who holds it, for the waiting runs' log lines
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}".encode(), 0)
        try:
            yield not is_done()  # finished between the check and the lock: nothing to build
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
