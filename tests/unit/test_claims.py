"""Claims in the storage itself: of several runs needing one stage at once, one builds it and the others reuse it."""

from __future__ import annotations

import subprocess
import sys
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


def test_a_holder_that_fails_releases_the_claim_and_the_next_run_builds(tmp_path):
    claims = tmp_path / "claims"
    try:
        with storage_claim(claims, "k", lambda: False, poll_s=0.05) as must_build:
            assert must_build
            raise KeyboardInterrupt  # Ctrl-C mid-build
    except KeyboardInterrupt:
        pass
    with storage_claim(claims, "k", lambda: False, poll_s=0.05) as must_build:  # would wait forever if still held
        assert must_build


def test_a_killed_holder_process_frees_the_claim_at_once(tmp_path):
    """kill -9 leaves no chance to clean up: the kernel drops the lock with the process."""
    claims = tmp_path / "claims"
    claims.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(claims / 'k.lock')!r}, os.O_CREAT | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        waited = []
        waiter = threading.Thread(target=lambda: waited.append(
            _claim_once(claims)))
        waiter.start()
        time.sleep(0.3)
        assert not waited  # the holder is alive: the waiter waits
        holder.kill()
        holder.wait()
        waiter.join(timeout=5)
        assert waited == [True]
    finally:
        holder.kill()


def _claim_once(claims) -> bool:
    with storage_claim(claims, "k", lambda: False, poll_s=0.05) as must_build:
        return must_build
