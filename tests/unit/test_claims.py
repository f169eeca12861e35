"""Claims in the storage itself: of several runs needing one stage at once, one builds it and the others reuse it."""

from __future__ import annotations

import os
import threading
import time

from mcl_ray.plan.claims import storage_claim


def test_one_of_several_concurrent_runs_builds_and_the_others_wait_and_reuse(tmp_path):
    done = threading.Event()
    builds, outcomes = [], []

    def run(name: str) -> None:
        with storage_claim(tmp_path / "claims", "k", done.is_set, label=name, poll_s=0.05) as must_build:
            outcomes.append(must_build)
            if must_build:
                builds.append(name)
                time.sleep(0.3)  # training
                done.set()  # the entry is committed

    threads = [threading.Thread(target=run, args=(f"run{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(builds) == 1 and sorted(outcomes) == [False, False, False, True]
    assert not (tmp_path / "claims" / "k.claim").exists()  # released


def test_a_claim_whose_holder_died_expires(tmp_path, caplog):
    claims = tmp_path / "claims"
    claims.mkdir()
    stale = claims / "k.claim"
    stale.write_text("otherhost pid 1 dead")
    os.utime(stale, (time.time() - 120, time.time() - 120))  # untouched for 2 minutes
    with caplog.at_level("WARNING", logger="mcl_ray"):
        with storage_claim(claims, "k", lambda: False, ttl_s=60, poll_s=0.05) as must_build:
            assert must_build and "pid" in stale.read_text() and "dead" not in stale.read_text()
    assert "broke the stale claim k.claim" in caplog.text


def test_a_live_claim_is_heartbeaten_and_never_broken(tmp_path):
    claims = tmp_path / "claims"
    with storage_claim(claims, "k", lambda: False, ttl_s=0.4, poll_s=0.05) as first:
        assert first
        before = (claims / "k.claim").stat().st_mtime
        time.sleep(0.5)  # longer than the ttl: only the heartbeat keeps it alive
        assert (claims / "k.claim").stat().st_mtime > before
        got = []
        waiter = threading.Thread(target=lambda: got.append(
            storage_claim(claims, "k", lambda: bool(got), ttl_s=0.4, poll_s=0.05).__enter__()))
        waiter.start()
        time.sleep(0.3)
        assert not got  # still waiting: the holder is alive
    waiter.join(timeout=5)
    assert got == [True]


def test_a_claim_of_a_dead_process_on_this_machine_is_broken_at_once(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "k.claim").write_text(f"{socket.gethostname()} pid {dead.stdout.strip()} 1234abcd")  # fresh mtime
    t0 = time.monotonic()
    with storage_claim(claims, "k", lambda: False, ttl_s=600, poll_s=0.05) as must_build:
        assert must_build
    assert time.monotonic() - t0 < 5  # not the 10-minute ttl
