"""Running a study's arms in turn or side by side (mcl_ray.study.arms), without Ray."""

from __future__ import annotations

import threading

import pytest

from mcl_ray.study.arms import ArmOutcome, arm_order, run_arms
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
