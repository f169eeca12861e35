"""Image-caption tables in open_clip's CSV convention: captions reach the ImageSet, attributes stay evaluable."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mcl_ray.data.registry import load_dataset
from mcl_ray.errors import DataError
from mcl_ray.plan.from_config import build_config, check_experiment

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}


def write_table(root, header="filepath\ttitle\tcolour\tsplit", sep="\t", name="pairs.tsv", blank_row=None):
    rows = [header]
    for i in range(10):
        colour = ("red", "blue")[i % 2]
        path = root / "img" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), COLOURS[colour], np.uint8)).save(path)
        caption = "" if i == blank_row else f"a {colour} square number {i}"
        rows.append(sep.join([f"img/{i}.png", caption, colour, "test" if i >= 8 else "train"]))
    (root / name).write_text("\n".join(rows) + "\n")
    return root / name


def test_a_tsv_of_filepath_and_title_gives_captioned_images_with_attributes(tmp_path):
    table = write_table(tmp_path)
    train = load_dataset("imagetext", "train", root=tmp_path, image_size=8, labels=table)
    assert len(train) == 8 and train.captions[3] == "a blue square number 3"
    assert set(train.attributes) == {"colour"} and train.value_names == {"colour": ("blue", "red")}
    np.testing.assert_array_equal(train.attributes["colour"], [1, 0] * 4)
    assert load_dataset("imagetext", "test", root=tmp_path, image_size=8, labels=table).captions == [
        "a red square number 8", "a blue square number 9"]


def test_comma_separated_path_and_caption_columns_are_accepted(tmp_path):
    table = write_table(tmp_path, header="path,caption,colour,split", sep=",", name="pairs.csv")
    assert load_dataset("imagetext", "train", root=tmp_path, image_size=8, labels=table).captions[0] == "a red square number 0"


@pytest.mark.parametrize("header,blank,match", [("filepath\tsentence\tcolour\tsplit", None, "no caption column"),
                                                ("file\ttitle\tcolour\tsplit", None, "no 'filepath' / 'path' / 'image' column"),
                                                ("filepath\ttitle\tcolour\tsplit", 2, "row 4 has an empty caption")])
def test_table_problems_name_the_file_and_column(tmp_path, header, blank, match):
    table = write_table(tmp_path, header=header, blank_row=blank)
    with pytest.raises(DataError, match=match):
        load_dataset("imagetext", "train", root=tmp_path, image_size=8, labels=table)


def test_clip_on_an_image_text_table_validates_and_the_study_knows_its_metrics(tmp_path):
    from mcl_ray.study.config import reported_metrics

    table = write_table(tmp_path)
    cfg = build_config({"data": {"name": "imagetext", "labels": str(table), "root": str(tmp_path), "image_size": 16,
                                 "train_size": None, "test_size": None},
                        "model": {"backbone": "open_clip:mcl-tiny", "head": "none"}, "objective": {"name": "clip"},
                        "mcl": {"clusters": 2}})
    check_experiment(cfg)
    metrics = reported_metrics(cfg)
    assert "integrated/colour/zeroshot" in metrics and "integrated/retrieval/t2i_r1" in metrics
    assert "integrated/caption/knn" not in metrics
