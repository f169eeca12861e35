"""eval.max_samples: huge probe/test sets are evaluated on a seeded, stated subsample; training keeps every image."""

from __future__ import annotations

import logging

import numpy as np

from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.plan.from_config import build_config, data_spec, stage_specs


def _cfg(tmp_path, **evaluation):
    return build_config({"data": {"name": "trifeature", "root": str(tmp_path), "train_size": 60, "test_size": 40,
                                  "image_size": 16},
                         "model": {"backbone": "test_resnet"}, "eval": evaluation})


def test_probe_and_test_are_capped_and_the_training_set_is_not(tmp_path, caplog):
    full = load_experiment_data(data_spec(_cfg(tmp_path)))
    with caplog.at_level(logging.WARNING):
        capped = load_experiment_data(data_spec(_cfg(tmp_path, max_samples=25)))
    assert len(capped.pretrain) == 60 and len(capped.probe) == 25 and len(capped.test) == 25
    assert "seeded subsample of 25 of its 60 images" in caplog.text
    # each kept image comes with its own labels
    images = np.asarray(capped.probe.images)
    rows = [int(np.flatnonzero((full.probe.images == image).all(axis=(1, 2, 3)))[0]) for image in images]
    assert rows == sorted(rows) and len(set(rows)) == 25
    for name, labels in capped.probe.attributes.items():
        np.testing.assert_array_equal(labels, full.probe.attributes[name][rows])
    again = load_experiment_data(data_spec(_cfg(tmp_path, max_samples=25)))
    np.testing.assert_array_equal(np.asarray(again.test.images), np.asarray(capped.test.images))  # seeded
    assert capped.probe.images[[0, 3]].shape == (2, 16, 16, 3)


def test_the_cap_is_in_the_stage_key_only_when_set(tmp_path):
    plain = stage_specs(_cfg(tmp_path))[0].identity()
    assert "eval_samples" not in plain["data"]  # keys made before the option existed stay valid
    assert stage_specs(_cfg(tmp_path, max_samples=25))[0].identity() != plain  # stored embeddings cover other rows


def test_a_huge_uncapped_set_is_warned_about_naming_the_option(tmp_path, caplog, monkeypatch):
    import mcl_ray.data.experiment_data as experiment_data

    monkeypatch.setattr(experiment_data, "LARGE_EVALUATION", 50)
    with caplog.at_level(logging.WARNING):
        data = load_experiment_data(data_spec(_cfg(tmp_path)))
    assert len(data.probe) == 60  # evaluated whole, as asked
    assert "probe set has 60 images and eval.max_samples is null" in caplog.text
    assert "test set" not in caplog.text  # 40 images: below the threshold
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_experiment_data(data_spec(_cfg(tmp_path, max_samples=30)))
    assert "is null" not in caplog.text
