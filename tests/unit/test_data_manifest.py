"""Stage keys of data read from the user's files follow the files, not the folder's path."""

from __future__ import annotations

import os
import shutil

import numpy as np
from PIL import Image

from mcl_ray.plan.from_config import data_spec, load_config


def _folder(root, value=0):
    for split in ("train", "test"):
        for i in range(4):
            path = root / split / ("a" if i % 2 else "b") / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 6, 3), value + i, np.uint8)).save(path)


def _identity(root, *extra):
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={root}", "mcl.stages=1", *extra])
    return data_spec(cfg).identity()


def test_replaced_images_change_the_key_and_a_moved_folder_keeps_it(tmp_path):
    root = tmp_path / "shots"
    _folder(root)
    before = _identity(root)
    assert len(before["files"]) == 24 and "root" not in before
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved, copy_function=shutil.copy2)  # same files, same sizes and times
    assert _identity(moved) == before
    replaced = root / "train" / "a" / "1.png"
    Image.fromarray(np.full((9, 9, 3), 200, np.uint8)).save(replaced)  # new content in place
    os.utime(replaced, ns=(1, 1))
    after = _identity(root)
    assert after != before
    (root / "train" / "a" / "notes.txt").write_text("not an image")  # files the data set does not read: no change
    assert _identity(root) == after


def test_a_labels_table_is_identified_by_its_contents(tmp_path):
    _folder(tmp_path)
    table = tmp_path / "labels.csv"
    rows = ["path,colour,split"] + [f"train/{'a' if i % 2 else 'b'}/{i}.png,{i % 2},train" for i in range(4)] + \
        [f"test/{'a' if i % 2 else 'b'}/{i}.png,{i % 2},test" for i in range(4)]
    table.write_text("\n".join(rows) + "\n")
    args = ["data.name=labeled", f"data.root={tmp_path}", f"data.labels={table}", "mcl.stages=1"]
    first = data_spec(load_config(None, args)).identity()
    table.write_text("\n".join(rows).replace(",1,", ",0,") + "\n")  # relabelled, same files
    assert data_spec(load_config(None, args)).identity() != first
    assert "files" not in data_spec(load_config(None, [])).identity()  # generated data: its settings fix it
