"""Running a study's arms: one after another, or side by side when the Ray cluster caps the study's trials.

Each arm (MCL and its controls) is its own Tune experiment: a seeded search, then its winner's confirmation
seeds. The arms are independent, so on the local instance the study starts itself as many arms run at once as
trials fit, each arm's Tuners in their own thread (Tune supports `fit()` off the main thread; it then installs
no signal handler). Tuners cannot see each other's trials, so the study-wide cap comes from Ray itself: the
local instance declares `STUDY_TRIAL_SLOTS` (= the trials its CPUs fit) and every trial's placement group asks
for one, so a trial driver only starts when its Train workers can be placed as well (the Tune + Train deadlock
the per-Tuner concurrency limit exists to prevent). A cluster without that resource (e.g. `ray up`) runs the
arms in turn.

Ctrl-C reaches the main thread only, and Tune run in another thread never hears of it. `TuneInterrupts` relays it:
it records the interrupt event each Tune run creates (Tune's `_setup_signal_catching`, the event its own SIGINT
handler sets in the main thread) and sets them all, so each arm's Tune loop stops the way it does on Ctrl-C: state
saved, unfinished trials kept for --resume. Shutting Ray down under running Tune loops instead makes Ray's core
worker end the process itself (status 1).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
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


class TuneInterrupts:
    """The interrupt events of the Tune runs started in other threads while `relaying()` is active; `interrupt()`
    sets them all, and any run started afterwards stops at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[threading.Event] = []
        self.interrupted = False

    def _record(self, event: threading.Event) -> threading.Event:
        with self.lock:
            self.events.append(event)
            if self.interrupted:
                event.set()
        return event

    def interrupt(self) -> None:
        with self.lock:
            self.interrupted = True
            for event in self.events:
                event.set()

    @contextlib.contextmanager
    def relaying(self):
        """Yields True when Tune's hook exists in this Ray version (otherwise Ctrl-C cannot be relayed: False)."""
        from ray.tune import tune as tune_module

        original = getattr(tune_module, "_setup_signal_catching", None)
        if original is None:
            yield False
            return
        tune_module._setup_signal_catching = lambda: self._record(original())
        # Ctrl-C as KeyboardInterrupt in this thread, also when an earlier Tune run in the main thread left its own
        # handler installed (Tune restores the previous one only after a SIGINT)
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
        try:
            yield True
        finally:
            tune_module._setup_signal_catching = original
            if main:
                signal.signal(signal.SIGINT, previous)


def arm_order(arms: Sequence[str]) -> list[str]:
    """MCL first and the ensemble last: ensemble members are MCL stages with other seeds (same content keys), so
    after MCL has trained them the ensemble mostly reuses; the other controls share nothing and fill the gap."""
    return sorted(arms, key=lambda arm: {"mcl": 0, "ensemble": 2}.get(arm, 1))


def run_arms(arms: Sequence[str], run_arm: Callable[[str], ArmOutcome], parallel: int = 1,
             grace_s: float = 120.0) -> dict[str, ArmOutcome]:
    """`run_arm(arm)` for every arm (in `arm_order`), at most `parallel` arms at a time, each in its own thread. An
    exception of any arm is raised here once the running arms have ended. On Ctrl-C the running arms' Tune loops
    are stopped as Tune stops on Ctrl-C (see `TuneInterrupts`) and their outcomes, marked interrupted, are returned
    once they have ended; a KeyboardInterrupt is raised instead when that cannot be done (no hook in this Ray
    version, the arms still running after `grace_s`, or a second Ctrl-C). With `parallel` 1 the arms run in this
    thread (Tune handles Ctrl-C itself), and stop at the first one Tune reports interrupted."""
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
    interrupts = TuneInterrupts()

    def work() -> None:
        while True:
            with lock:
                if (not waiting or interrupts.interrupted
                        or any(isinstance(o, BaseException) or o.interrupted for o in outcomes.values())):
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
    with interrupts.relaying() as relayed:
        for thread in threads:
            thread.start()
        try:
            _join(threads, None)
        except KeyboardInterrupt:
            if not relayed:
                raise
            interrupts.interrupt()
            if not _join(threads, grace_s) or not outcomes:  # a second Ctrl-C inside also ends up in the caller
                raise
            with lock:
                for outcome in outcomes.values():
                    if isinstance(outcome, ArmOutcome):
                        outcome.interrupted = True
    failures = [o for o in outcomes.values() if isinstance(o, BaseException)]
    if failures:
        raise failures[0]
    return {arm: outcomes[arm] for arm in order if arm in outcomes}


def _join(threads: list[threading.Thread], timeout_s: float | None) -> bool:
    """Wait for the threads (in bounded steps, so Ctrl-C reaches this thread); False if `timeout_s` ran out."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for thread in threads:
        while thread.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                return False
            thread.join(0.5)
    return True
