"""Who is building which stage right now, decided by the storage itself (no Ray needed).

Two runs of the same experiment started together (two shells, two local Ray instances, two study drivers)
must not both train a stage: the second waits and reuses it. On local and `file://` storage a claim is a
file created with O_CREAT | O_EXCL under `<storage>/claims/<key>.claim`, which exactly one process can
create; its holder touches it every ttl/4 s while it builds, and a claim untouched for `ttl_s` (its holder was
killed) is broken by renaming it away (one rename wins) so a crashed run never blocks the next. Object stores
have no exclusive create in pyarrow: there the Ray executor falls back to its lease actor (one Ray cluster)
and the local executor warns that concurrent runs are not serialised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("mcl_ray")


def _create(path: Path, owner: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(owner)
    return True


def _holder_is_dead(owner: str | None) -> bool:
    """A claim made on this machine by a process that no longer exists (killed -9) need not wait for its ttl."""
    parts = (owner or "").split()
    if len(parts) < 3 or parts[0] != socket.gethostname() or parts[1] != "pid" or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _break_if_stale(path: Path, ttl_s: float) -> bool:
    """Remove a claim nobody has touched for ttl_s, or whose holder on this machine has died; True when it was
    stale (whoever removed it)."""
    try:
        if time.time() - path.stat().st_mtime < ttl_s and not _holder_is_dead(_owner_of(path)):
            return False
        aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
        path.rename(aside)  # atomic: of several breakers exactly one succeeds
        aside.unlink(missing_ok=True)
        log.warning("broke the stale claim %s (its holder stopped heartbeating %.0f s ago)", path.name, ttl_s)
    except FileNotFoundError:  # released or broken by someone else meanwhile
        pass
    return True


def _owner_of(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@contextlib.contextmanager
def storage_claim(claims_dir: Path, key: str, is_done: Callable[[], bool], *, label: str = "",
                  ttl_s: float = 60.0, poll_s: float = 2.0) -> Iterator[bool]:
    """Yield True when the caller must build `key` (it holds the claim), False once someone else built it."""
    claims_dir.mkdir(parents=True, exist_ok=True)
    path = claims_dir / f"{key}.claim"
    owner = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"
    last_note = 0.0
    while True:
        if is_done():
            yield False
            return
        if _create(path, owner):
            break
        if _break_if_stale(path, ttl_s):
            continue
        if time.monotonic() - last_note > 30:
            log.info("%s: stage %s is being built by %s; waiting to reuse it", label, key[:12], _owner_of(path) or "another run")
            last_note = time.monotonic()
        time.sleep(poll_s)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl_s / 4):
            try:
                os.utime(path)
            except OSError:
                return

    thread = threading.Thread(target=heartbeat, daemon=True, name=f"claim-{key[:8]}")
    thread.start()
    try:
        yield not is_done()  # finished between the check and the create: nothing to build
    finally:
        stop.set()
        thread.join(timeout=5)
        if _owner_of(path) == owner:
            path.unlink(missing_ok=True)
