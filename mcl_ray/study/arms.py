"""Running a study's arms: one after another, or side by side when the Ray cluster caps the study's trials.

Each arm (MCL and its controls) is its own Tune experiment: a seeded search, then its winner's confirmation
seeds. The arms are independent, so on the local instance the study starts itself as many arms run at once as
trials fit, each arm's Tuners in their own thread (Tune supports `fit()` off the main thread; it then installs
no signal handler). Tuners cannot see each other's trials, so the study-wide cap comes from Ray itself: the
local instance declares `STUDY_TRIAL_SLOTS` (= the trials its CPUs fit) and every trial's placement group asks
for one, so a trial driver only starts when its Train workers can be placed as well (the Tune + Train deadlock
the per-Tuner concurrency limit exists to prevent). A cluster without that resource (e.g. `ray up`) runs the
arms in turn.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import ray

STUDY_TRIAL_SLOTS = "mcl_study_trial"


def trial_slots() -> int:
    """How many study trials the connected cluster lets run at once across arms (0: no cap declared)."""
    return int(ray.cluster_resources().get(STUDY_TRIAL_SLOTS, 0))


@dataclass
class ArmOutcome:
    """What one arm's search and confirmation left: failed trials' results and, for the MCL arm, its folder."""

    errors: list = field(default_factory=list)
    experiment_path: str | None = None
    interrupted: bool = False


def arm_order(arms: Sequence[str]) -> list[str]:
    """MCL first and the ensemble last: ensemble members are MCL stages with other seeds (same content keys), so
    after MCL has trained them the ensemble mostly reuses; the other controls share nothing and fill the gap."""
    return sorted(arms, key=lambda arm: {"mcl": 0, "ensemble": 2}.get(arm, 1))


def run_arms(arms: Sequence[str], run_arm: Callable[[str], ArmOutcome], parallel: int = 1) -> dict[str, ArmOutcome]:
    """`run_arm(arm)` for every arm (in `arm_order`), at most `parallel` arms at a time, each in its own thread. An
    exception of any arm is raised here once the running arms have ended; a KeyboardInterrupt (Ctrl-C reaches
    the main thread only) is raised at once, leaving the threads to the caller's shutdown (they are daemons:
    trials resume from the stage cache). With `parallel` 1 the arms run in this thread, and stop at the first
    one Tune reports interrupted."""
    order = arm_order(arms)
    if parallel < 2 or len(order) < 2:
        outcomes = {}
        for arm in order:
            outcomes[arm] = run_arm(arm)
            if outcomes[arm].interrupted:  # Tune caught Ctrl-C: do not start the next arm
                break
        return outcomes
    outcomes: dict[str, ArmOutcome | BaseException] = {}
    waiting = list(order)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not waiting or any(isinstance(o, BaseException) or o.interrupted for o in outcomes.values()):
                    return
                arm = waiting.pop(0)
            try:
                outcome = run_arm(arm)
            except BaseException as exc:  # handed to the main thread
                outcome = exc
            with lock:  # the other threads read `outcomes` under the lock
                outcomes[arm] = outcome

    threads = [threading.Thread(target=work, name=f"study-arms-{i}", daemon=True)
               for i in range(min(parallel, len(order)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # a bounded wait keeps the main thread responsive to Ctrl-C
    failures = [o for o in outcomes.values() if isinstance(o, BaseException)]
    if failures:
        raise failures[0]
    return {arm: outcomes[arm] for arm in order if arm in outcomes}
