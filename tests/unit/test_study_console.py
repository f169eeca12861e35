"""The study console: one line per trial event and a throttled progress line, not Tune's tables."""

from __future__ import annotations

import io
from types import SimpleNamespace

from mcl_ray.study.console import StudyConsole


def _trial(trial_id, status="RUNNING", last_result=None):
    config = {"experiment": {"big": "base config"}, "study": {"name": "s"}, "mcl.stages": 3, "objective.temperature": 0.25}
    return SimpleNamespace(trial_id=trial_id, config=config, status=status, last_result=last_result or {},
                           local_path="/tmp/s/trial_" + trial_id)


def test_one_line_per_event_with_the_metric_and_the_searched_settings():
    out = io.StringIO()
    console = StudyConsole("mcl", "integrated/texture/linear", out=out, progress_every_s=0.0)
    trial = _trial("ab12")
    console.on_trial_start(0, [trial], trial)
    console.on_trial_result(1, [trial], trial, {"integrated/texture/linear": 0.41234, "stage": 1, "stages_planned": 3,
                                                "reused_stage": False})
    console.on_trial_result(2, [trial], trial, {"integrated/texture/linear": 0.45, "stage": 2, "stages_planned": 3,
                                                "reused_stage": True})
    trial.last_result = {"integrated/texture/linear": 0.45, "stage": 2, "stages_planned": 3}
    console.on_step_end(3, [trial, _trial("cd34", status="TERMINATED")])
    trial.last_result = {"integrated/texture/linear": 0.47}
    console.on_trial_complete(4, [trial], trial)
    failed = _trial("ef56")
    console.on_trial_error(5, [failed], failed)
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert lines[0].endswith("[mcl] trial_ab12 started: stages 3, temperature 0.25")  # no base-config dump
    assert "trial_ab12 stage 1/3: integrated/texture/linear 0.4123 (trained in" in lines[1]
    assert lines[2].endswith("trial_ab12 stage 2/3: integrated/texture/linear 0.4500 (reused)")
    assert "1/2 trials done; trial_ab12 in stage 3/3 for" in lines[3]
    assert "trial_ab12 done after" in lines[4] and lines[4].endswith("integrated/texture/linear 0.4700")
    assert "trial_ef56 FAILED (details: /tmp/s/trial_ef56/error.txt)" in lines[5]


def test_progress_lines_are_throttled():
    out = io.StringIO()
    console = StudyConsole("ensemble", "m", out=out, progress_every_s=3600)
    for step in range(50):
        console.on_step_end(step, [_trial("ab12")])
    assert out.getvalue() == ""


def test_progress_shows_the_epoch_from_the_trials_live_curves(tmp_path):
    from mcl_ray.engine.live_curves import write_progress

    trial = _trial("ab12", last_result={"stage": 1, "stages_planned": 3})
    trial.local_path = str(tmp_path)
    (tmp_path / "curves").mkdir()
    write_progress(str(tmp_path / "curves"), stage=2, epoch=3, epochs=8)
    out = io.StringIO()
    StudyConsole("mcl", "m", out=out, progress_every_s=0.0).on_step_end(0, [trial])
    assert "trial_ab12 in stage 2/3, epoch 3/8 for" in out.getvalue()
    write_progress(str(tmp_path / "curves"), stage=1, epoch=8, epochs=8)  # an older stage's file: no epoch shown
    out = io.StringIO()
    StudyConsole("mcl", "m", out=out, progress_every_s=0.0).on_step_end(0, [trial])
    assert "in stage 2/3 for" in out.getvalue()


def test_progress_before_the_first_report_knows_the_planned_stages():
    out = io.StringIO()
    StudyConsole("mcl confirm", "m", out=out, progress_every_s=0.0).on_step_end(0, [_trial("ab12")])
    assert "trial_ab12 in stage 1/3 for" in out.getvalue()  # from the trial's mcl.stages, not "1/?"
    out = io.StringIO()
    StudyConsole("long confirm", "m", out=out, progress_every_s=0.0).on_step_end(0, [_trial("cd34")])
    assert "trial_cd34 in stage 1/1 for" in out.getvalue()  # the long run reports once


def test_the_console_pickles_with_the_tuner_whatever_stdout_is(monkeypatch):
    import pickle
    import sys

    class Unpicklable(io.StringIO):
        def __reduce__(self):
            raise TypeError("cannot pickle a terminal")

    monkeypatch.setattr(sys, "stdout", Unpicklable())
    console = StudyConsole("mcl", "m")
    clone = pickle.loads(pickle.dumps(console))
    clone._say("hello")
    assert sys.stdout.getvalue().endswith("[mcl] hello\n")


def test_progress_counts_the_arms_whole_budget_not_only_the_trials_tune_has_created():
    out = io.StringIO()  # with 2 trials at a time Tune has created 2 of the arm's 8 so far
    StudyConsole("mcl", "m", out=out, progress_every_s=0.0, total=8).on_step_end(
        0, [_trial("ab12"), _trial("cd34", status="TERMINATED")])
    assert "1/8 trials done; trial_ab12 in stage 1/3" in out.getvalue()
