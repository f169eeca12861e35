"""Checks the CLI makes around expensive work: what a run will train and evaluate on (`mcl-ray validate` says
it; size mistakes such as a cap above the data or more clusters than images fail there, naming the field), and
what Ctrl-C left behind."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mcl_ray.cli import main
from mcl_ray.errors import ConfigError
from mcl_ray.plan.from_config import check_data_sizes, data_sizes, load_config


def _folder(root, counts):
    for split, n in counts.items():
        for i in range(n):
            path = root / split / ("a" if i % 2 else "b") / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    (root / "train" / "a" / "notes.txt").write_text("not an image")


def test_generated_sets_use_the_requested_sizes():
    sizes = data_sizes(load_config(None, ["data.train_size=300", "data.test_size=100"]))
    assert sizes["pretrain"]["used"] == 300 and sizes["test"]["used"] == 100
    assert sizes["pretrain"]["note"] == "generated"


def test_image_folder_counts_files_and_spells_out_a_subsample(tmp_path):
    _folder(tmp_path, {"train": 12, "val": 5})
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path}", "data.train_size=10", "data.test_size=null"])
    sizes = data_sizes(cfg)
    assert sizes["pretrain"]["available"] == 12 and sizes["pretrain"]["used"] == 10
    assert "seeded subsample of 10 of 12" in sizes["pretrain"]["note"]
    assert sizes["test"] == {"split": "test", "available": 5, "used": 5, "note": "all", "cap": None}
    check_data_sizes(cfg, sizes)
    too_many = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path}", "data.train_size=40"])
    with pytest.raises(ConfigError, match=r"data.train_size: 40 asks for more than the 12 images"):
        check_data_sizes(too_many, data_sizes(too_many))
    clusters = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path}", "data.train_size=null",
                                  "data.test_size=null", "mcl.clusters=20"])
    with pytest.raises(ConfigError, match="mcl.clusters: 20 clusters but only 12 training images"):
        check_data_sizes(clusters, data_sizes(clusters))


def test_labeled_table_counts_rows_per_split(tmp_path):
    rows = ["path,colour,split"] + [f"{i}.png,red,{'test' if i < 3 else 'train'}" for i in range(10)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = load_config(None, ["data.name=labeled", f"data.root={tmp_path}", f"data.labels={tmp_path / 'labels.csv'}",
                             "data.train_size=null", "data.test_size=null", "mcl.stages=1"])
    sizes = data_sizes(cfg)
    assert (sizes["pretrain"]["used"], sizes["test"]["used"]) == (7, 3)


def test_more_clusters_than_training_images_fails_when_the_config_loads():
    with pytest.raises(ConfigError, match="mcl.clusters: 600 clusters but only 500 training images"):
        load_config(None, ["data.train_size=500", "mcl.stages=3", "mcl.clusters=[10, 600]"])
    load_config(None, ["data.train_size=500", "mcl.stages=1", "mcl.clusters=600"])  # no clustering: fine


def test_validate_prints_the_sizes_and_fails_on_a_cap_above_the_data(tmp_path, capsys):
    assert main(["validate", "--config", "trifeature", "data.train_size=700"]) == 0
    assert "# images: pretrain (train): 700 (generated)" in capsys.readouterr().out
    _folder(tmp_path, {"train": 6, "test": 4})
    assert main(["validate", "data.name=imagefolder", f"data.root={tmp_path}", "data.train_size=null",
                 "data.test_size=9", "mcl.clusters=3"]) == 2
    assert "data.test_size: 9 asks for more than the 4 images" in capsys.readouterr().err


def test_ctrl_c_says_what_is_finished_and_the_command_that_resumes(tmp_path, capsys, monkeypatch):
    import mcl_ray.plan.local as local

    def interrupted(cfg, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "run_local", interrupted)
    argv = ["train", "--local", "--output", str(tmp_path), "name=my run".replace(" ", "-"), "mcl.stages=2"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted: no stage had finished" in err
    assert f"Resume with:\n  mcl-ray train --local --output {tmp_path} name=my-run mcl.stages=2" in err


def test_the_bare_command_prints_help_version_and_unknown_config_names(capsys):
    assert main([]) == 0
    assert "usage: mcl-ray" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("mcl-ray 0.")
    assert main(["validate", "--config", "trifeatur"]) == 2
    assert "--config: 'trifeatur' is neither a file nor a bundled config; bundled: clip_trifeature, trifeature" in capsys.readouterr().err
