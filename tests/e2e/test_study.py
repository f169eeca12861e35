"""A real sweep (2 trials x 2 stages) on Ray Tune: TensorBoard files, the report, and resuming after the
study driver is killed. (Spaces and settings without Ray: tests/unit/test_study_settings.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from mcl_ray.cli import main
from mcl_ray.study import load_study
from mcl_ray.study.arms import STUDY_TRIAL_SLOTS

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RESNET = ROOT / "studies" / "configs" / "resnet.yaml"
TINY_STUDY = [
    "study.samples=2", "study.scheduler=none", "study.arms=[mcl]", "study.confirm_seeds=0", "study.max_concurrent=1", "study.space.stages=[2,2]",
    "experiment.train.epochs=1", "experiment.data.train_size=200", "experiment.data.test_size=100",
    "experiment.data.image_size=16", "experiment.train.batch_size=64", "experiment.eval.linear_epochs=10",
    "experiment.model.proj_hidden_dim=32", "experiment.model.proj_dim=16",
]


# ---------------------------------------------------------------- real sweeps on one shared Ray instance


@pytest.fixture(scope="module")
def ray_cluster():
    # the trial slots a study's own local instance declares: arms then run side by side, 2 trials at a time
    ray.init(num_cpus=8, object_store_memory=300 * 1024**2, log_to_driver=False, resources={STUDY_TRIAL_SLOTS: 2})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def trial_dirs(study_dir: Path) -> list[Path]:
    return sorted(p.parent for p in study_dir.glob("trial_*/result.json"))


def stage_rows(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def terminated_trials(study_dir: Path) -> int:
    states = sorted(study_dir.glob("experiment_state-*.json"))
    if not states:
        return 0
    try:
        text = states[-1].read_text()
    except OSError:
        return 0
    return text.count("TERMINATED")


def test_sweep_reports_per_stage_writes_tensorboard_and_resumes_after_the_driver_is_killed(ray_cluster, tmp_path, data_dir=None):
    storage = tmp_path / "results"
    data = tmp_path / "data"
    args = [sys.executable, str(ROOT / "studies" / "sweep_resnet.py"), "--address", ray_cluster,
            "--profile", "local", "--storage", str(storage), *TINY_STUDY, f"experiment.data.root={data}"]
    env = dict(os.environ)  # the same Ray auth mode as this process's cluster
    log_path = tmp_path / "driver.log"
    with log_path.open("wb") as log_file:
        driver = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    study_dir = storage / "sweep-resnet"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and driver.poll() is None:
        if terminated_trials(study_dir) >= 1:
            break
        time.sleep(1)
    assert driver.poll() is None, "the study finished before it could be interrupted:\n" + log_path.read_text()[-3000:]
    assert terminated_trials(study_dir) >= 1, "no trial finished in time"
    first = next(t for t in trial_dirs(study_dir) if len(stage_rows(t)) == 2)  # the finished trial
    first_rows = stage_rows(first)
    os.killpg(driver.pid, signal.SIGKILL)  # the study driver dies mid-study
    driver.wait()
    console = log_path.read_text()  # the study's own one-line-per-event console, not Tune's tables
    assert f"[mcl] {first.name} started: " in console and f"[mcl] {first.name} stage 2/2: integrated/texture/linear" in console
    assert "Trial status:" not in console and "started with configuration" not in console
    assert "To visualize your results with TensorBoard" not in console  # Tune's hint names its own driver folder

    study = load_study(RESNET, "local", [*TINY_STUDY, f"study.storage={storage}", f"experiment.data.root={data}"])
    from mcl_ray.study import build_tuner

    results = build_tuner(study, resume=True).fit()
    assert len(results) == 2 and not any(r.error for r in results)
    assert stage_rows(first) == first_rows  # the finished trial was not rerun
    for trial in trial_dirs(study_dir):
        rows = stage_rows(trial)
        assert [r["stage"] for r in rows] == [1, 2]  # one report per stage
        assert {"integrated/texture/linear", "stage_alone/shape/knn", "reused_stage"} <= set(rows[-1])
        assert list(trial.glob("events.out.tfevents.*")), "Tune's TensorBoard file"
        assert list((trial / "curves").glob("events.out.tfevents.*")), "per-epoch curves"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(first.glob("events.out.tfevents.*"))))
    events.Reload()
    assert "ray/tune/integrated/texture/linear" in events.Tags()["scalars"]
    hparams = events.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    assert b"objective.temperature" in hparams and b"mcl.clusters" in hparams
    for trial in trial_dirs(study_dir):  # a directory: the killed and the resumed driver may each have a file
        curves = EventAccumulator(str(trial / "curves"))
        curves.Reload()
        assert len({e.step for e in curves.Scalars("epoch/loss")}) == 2  # 2 stages x 1 epoch

    assert main(["report", str(study_dir)]) == 0
    for png in ("metric_vs_stage.png", "metric_vs_params.png", "best_trial_attributes.png"):
        assert (study_dir / "report" / png).stat().st_size > 1000
    table = (study_dir / "report" / "trials.txt").read_text().splitlines()
    assert len(table) >= 4 and "stage1 integrated/texture/linear" in table[0]


def test_control_arms_run_side_by_side_with_mcl_and_the_report_gives_a_verdict(ray_cluster, tmp_path, capsys):
    from mcl_ray.study.cli import study_main
    from mcl_ray.study.report import report

    storage = tmp_path / "results"
    # two arms keep this test short: the long arm runs through the same trainable (tests/e2e/test_arms.py runs it)
    assert study_main(["--config", str(RESNET), "--profile", "local", "--storage", str(storage), *TINY_STUDY,
                       "study.samples=1", "study.arms=[mcl,ensemble]", f"experiment.data.root={tmp_path / 'data'}"]) == 0
    assert "2 arms side by side, 2 trials at a time" in capsys.readouterr().out
    study_dir = storage / "sweep-resnet"
    (mcl,) = [stage_rows(t) for t in trial_dirs(study_dir)]
    (ensemble,) = [stage_rows(t) for t in trial_dirs(study_dir / "arms" / "ensemble")]
    assert [r["stage"] for r in mcl] == [1, 2] == [r["stage"] for r in ensemble]
    # the same seeded searcher gave every arm the same settings, so ensemble member 1 is MCL's stage 1: trained by
    # whichever trial claimed it first, reused by the other
    assert {ensemble[0]["reused_stage"], mcl[0]["reused_stage"]} == {True, False}
    assert ensemble[0]["integrated/texture/linear"] == mcl[0]["integrated/texture/linear"]
    assert not ensemble[1]["reused_stage"] and ensemble[1]["arm"] == "ensemble"
    # the arms ran at the same time
    spans = [(rows[-1]["timestamp"] - rows[-1]["time_total_s"], rows[-1]["timestamp"]) for rows in (mcl, ensemble)]
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    text, plots = report([str(study_dir)])
    assert "MCL (2 stages)" in text and "the ensemble of 2" in text
    verdict = text.split("verdict:")[1]
    assert all(f"{a}:" in verdict for a in ("shape", "texture", "color")) and "set study.confirm_seeds" in verdict
    assert (study_dir / "report" / "verdict.png") in plots


def test_ctrl_c_ends_a_study_with_arms_side_by_side_naming_the_resume_command(ray_cluster, tmp_path):
    storage, data = tmp_path / "results", tmp_path / "data"
    args = [sys.executable, str(ROOT / "studies" / "sweep_resnet.py"), "--address", ray_cluster, "--profile", "local",
            "--storage", str(storage), *TINY_STUDY, "study.samples=1", "study.arms=[mcl,long]",
            f"experiment.data.root={data}"]
    log_path = tmp_path / "driver.log"
    with log_path.open("wb") as log_file:
        driver = subprocess.Popen(args, env=dict(os.environ), stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None and "started:" not in log_path.read_text():
        time.sleep(0.5)
    assert driver.poll() is None, log_path.read_text()[-3000:]
    driver.send_signal(signal.SIGINT)  # Ctrl-C while both arms' trials train (in the arms' threads)
    t0 = time.monotonic()
    assert driver.wait(timeout=60) == 130
    console = log_path.read_text()
    assert time.monotonic() - t0 < 30, console[-3000:]
    assert "study sweep-resnet interrupted: finished trials, stages and epochs are kept. Resume with:" in console
    assert "--resume" in console.split("Resume with:")[1] and "Traceback" not in console
    assert "Tuner.restore" not in console  # one resume command: the study's, not Tune's per arm

    from mcl_ray.study.cli import study_main

    assert study_main([*args[2:], "--resume"], default_config=RESNET) == 0  # the printed command, in this process
    study_dir = storage / "sweep-resnet"
    for directory in (study_dir, study_dir / "arms" / "long"):
        (rows,) = [stage_rows(t) for t in trial_dirs(directory)]
        assert rows[-1]["stage"] == rows[-1]["stages_planned"]
