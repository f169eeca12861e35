"""Running a study's arms in turn or side by side (mcl_ray.study.arms), without a Ray instance."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from mcl_ray.study.arms import ArmOutcome, TuneInterrupts, arm_order, run_arms
from mcl_ray.study.cli import resume_command, unfinished

ARMS = ["mcl", "ensemble", "long"]


def test_concurrent_arms_run_at_the_same_time():
    everyone_started = threading.Barrier(len(ARMS), timeout=10)  # breaks (raises) if the arms ran one after another
    threads = set()

    def run_arm(arm):
        threads.add(threading.current_thread().name)
        everyone_started.wait()
        return ArmOutcome(experiment_path=f"/study/{arm}")

    outcomes = run_arms(ARMS, run_arm, parallel=3)
    assert sorted(outcomes) == sorted(ARMS) and outcomes["long"].experiment_path == "/study/long"
    assert len(threads) == 3 and threading.current_thread().name not in threads


def test_no_more_arms_run_at_once_than_allowed_mcl_first_and_the_ensemble_last():
    running, most, started = set(), [0], []
    lock = threading.Lock()

    def run_arm(arm):
        with lock:
            running.add(arm)
            started.append(arm)
            most[0] = max(most[0], len(running))
        threading.Event().wait(0.1)
        with lock:
            running.discard(arm)
        return ArmOutcome()

    run_arms(["ensemble", "ifm", "mcl", "long"], run_arm, parallel=2)
    assert most[0] == 2 and started[:2] == ["mcl", "ifm"] and started[-1] == "ensemble"
    assert arm_order(["long", "ensemble", "mcl"]) == ["mcl", "long", "ensemble"]


def test_arms_in_turn_stop_after_an_interrupted_arm():
    ran, threads = [], set()

    def run_arm(arm):
        ran.append(arm)
        threads.add(threading.current_thread())
        return ArmOutcome(interrupted=arm == "long")  # Tune caught Ctrl-C during the long arm

    outcomes = run_arms(ARMS, run_arm, parallel=1)
    assert ran == ["mcl", "long"] and outcomes["long"].interrupted and threads == {threading.main_thread()}


def test_ctrl_c_stops_the_tune_loops_in_the_arms_threads_as_tune_would_and_starts_no_other_arm():
    """Ctrl-C reaches the main thread only: each running arm's Tune loop gets its interrupt event set (the one Tune's
    own SIGINT handler sets when it runs in the main thread), the arms return interrupted, no waiting arm starts."""
    from ray.tune import tune as tune_module

    original = tune_module._setup_signal_catching
    started, both_running = [], threading.Barrier(2, timeout=10)

    def run_arm(arm):
        event = tune_module._setup_signal_catching()  # what tune.run does first, in this (arm) thread
        started.append(arm)
        both_running.wait()
        return ArmOutcome(interrupted=event.wait(30))  # Tune's loop ends when its event is set

    def ctrl_c():
        while len(started) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    # a handler left behind by an earlier Tune run in the main thread (Tune never removes its own) must not swallow it
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        threading.Thread(target=ctrl_c, daemon=True).start()
        t0 = time.monotonic()
        outcomes = run_arms(["mcl", "long", "ensemble"], run_arm, parallel=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - t0 < 20
    assert sorted(outcomes) == ["long", "mcl"] and all(o.interrupted for o in outcomes.values())
    assert "ensemble" not in started and tune_module._setup_signal_catching is original


def test_a_tune_run_started_after_the_interrupt_stops_at_once():
    interrupts = TuneInterrupts()
    before = interrupts._record(threading.Event())
    interrupts.interrupt()
    assert before.is_set() and interrupts._record(threading.Event()).is_set()


def test_a_failing_arm_is_raised_once_the_others_have_ended():
    finished = []

    def run_arm(arm):
        if arm == "ensemble":
            raise ValueError("ensemble broke")
        threading.Event().wait(0.2)
        finished.append(arm)
        return ArmOutcome()

    with pytest.raises(ValueError, match="ensemble broke"):
        run_arms(ARMS, run_arm, parallel=3)
    assert sorted(finished) == ["long", "mcl"]


class _Results(list):
    def __init__(self, statuses):
        super().__init__(statuses)
        self.num_terminated = statuses.count("TERMINATED")
        self.num_errors = statuses.count("ERROR")


@pytest.mark.parametrize("statuses, expected, interrupted", [
    (["TERMINATED", "TERMINATED"], 2, False),
    (["TERMINATED", "ERROR"], 2, False),
    (["TERMINATED", "RUNNING"], 2, True),  # Tune saved a running trial on Ctrl-C
    (["TERMINATED"], 2, True),  # stopped before the second trial was created
])
def test_an_arm_is_interrupted_when_a_trial_neither_finished_nor_failed(statuses, expected, interrupted):
    assert unfinished(_Results(statuses), expected) is interrupted


def test_the_resume_command_repeats_the_arguments_with_resume_once(monkeypatch):
    monkeypatch.setattr("sys.argv", ["studies/sweep_vit.py", "--storage", "/tmp/my results"])
    assert resume_command(None) == "python studies/sweep_vit.py --storage '/tmp/my results' --resume"
    assert resume_command(["--resume", "seed=1"]) == "python studies/sweep_vit.py --resume seed=1"
