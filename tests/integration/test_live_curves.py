"""LiveCurves, the Ray Train callback that writes per-epoch TensorBoard curves from the controller (no cluster needed)."""

from __future__ import annotations

import logging
import pickle

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mcl_ray.engine.live_curves import LiveCurves


def scalars(logdir, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return sorted((e.step, round(e.value, 6)) for e in events.Scalars(tag))  # files of one dir: any order


def row(epoch: int, loss: float) -> dict:
    return {"stage": 2, "epoch": epoch, "loss": loss, "lr": 0.1, "images_per_s": 100.0, "epoch_time_s": 1.5}


def test_rank_zero_epochs_land_on_the_global_epoch_axis(tmp_path):
    callback = LiveCurves(str(tmp_path), stage=2, epochs_per_stage=3)
    for epoch, loss in ((1, 4.5), (2, 4.25)):
        callback.after_report(None, [row(epoch, loss), row(epoch, 99.0)], checkpoint=None)  # rank 1's row ignored
    assert scalars(tmp_path, "epoch/loss") == [(4, 4.5), (5, 4.25)]  # stage 2 of 3-epoch stages starts at step 4
    assert scalars(tmp_path, "epoch/images_per_s") == [(4, 100.0), (5, 100.0)]


def test_a_shipped_copy_opens_its_own_writer(tmp_path):
    callback = LiveCurves(str(tmp_path), stage=1, epochs_per_stage=2)
    callback.after_report(None, [row(1, 3.0)], checkpoint=None)
    copy = pickle.loads(pickle.dumps(callback))  # what Ray sends to the controller
    assert copy._writer is None
    copy.after_report(None, [row(2, 2.0)], checkpoint=None)
    assert scalars(tmp_path, "epoch/loss") == [(1, 3.0), (2, 2.0)]


def test_reports_without_an_epoch_are_skipped(tmp_path):
    callback = LiveCurves(str(tmp_path / "tb"), stage=1, epochs_per_stage=2)
    callback.after_report(None, [{"error": "x"}], checkpoint=None)
    callback.after_report(None, [], checkpoint=None)
    assert not (tmp_path / "tb").exists()


def test_an_unwritable_directory_warns_instead_of_failing_the_stage(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    callback = LiveCurves(str(blocker / "tb"), stage=1, epochs_per_stage=2)
    with caplog.at_level(logging.WARNING, logger="mcl_ray"):
        callback.after_report(None, [row(1, 3.0)], checkpoint=None)
    assert "could not write epoch 1" in caplog.text


def test_a_rerun_adds_no_point_twice(tmp_path):
    from types import SimpleNamespace

    from mcl_ray.tracking.tensorboard import RunWriter

    LiveCurves(str(tmp_path), stage=1, epochs_per_stage=2).after_report(None, [row(1, 3.0)], checkpoint=None)
    record = SimpleNamespace(stage=1, history=[row(1, 3.0), row(2, 2.0)], integrated_eval={"shape": {"knn": 0.5}},
                             stage_eval={"shape": {"knn": 0.4}}, cluster=None)
    for _ in range(2):  # the run, then the same run again (every stage reused)
        writer = RunWriter(tmp_path)
        writer.log_stage(record, epochs_per_stage=2)
        writer.close()
    assert scalars(tmp_path, "epoch/loss") == [(1, 3.0), (2, 2.0)]  # epoch 1 was live, epoch 2 from the history
    assert scalars(tmp_path, "integrated/shape/knn") == [(1, 0.5)]
