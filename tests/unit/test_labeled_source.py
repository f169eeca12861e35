"""Your own images with several labels each: a CSV or Parquet table, every attribute evaluated."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.data.registry import load_dataset
from mcl_ray.errors import ConfigError, DataError
from mcl_ray.plan.evaluation import evaluate
from mcl_ray.plan.from_config import data_spec, eval_spec, load_config

SHAPES, COLOURS = ("round", "square"), {"red": (255, 0, 0), "blue": (0, 0, 255)}


@pytest.fixture
def table_root(tmp_path):
    """24 images: colour drawn as the image's fill, size a second label (int), split column."""
    root = tmp_path / "shots"
    rows = ["path,colour,size,split"]
    for i in range(24):
        colour = ("red", "blue")[i % 2]
        path = root / "img" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), COLOURS[colour], np.uint8)).save(path)
        rows.append(f"img/{i}.png,{colour},{i % 3},{'test' if i >= 18 else 'train'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_csv_rows_become_images_with_every_attribute(table_root, tmp_path):
    train = load_dataset("labeled", "train", root=table_root, image_size=8, labels=table_root / "labels.csv",
                         cache_dir=tmp_path / "cache")
    test = load_dataset("labeled", "test", root=table_root, image_size=8, labels=table_root / "labels.csv")
    assert train.images.shape == (18, 8, 8, 3) and len(test) == 6
    assert set(train.attributes) == {"colour", "size"}
    np.testing.assert_array_equal(train.attributes["colour"], [1, 0] * 9)  # blue=0, red=1 (sorted names)
    np.testing.assert_array_equal(test.attributes["size"], [0, 1, 2, 0, 1, 2])
    assert (train.images[0] == COLOURS["red"]).all() and (train.images[1] == COLOURS["blue"]).all()


def test_parquet_and_a_seeded_split_without_a_split_column(table_root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [f"img/{i}.png" for i in range(20)]
    pq.write_table(pa.table({"path": paths, "colour": ["red", "blue"] * 10}), table_root / "labels.parquet")
    args = dict(root=table_root, image_size=8, labels=table_root / "labels.parquet", seed=3)
    train, test = load_dataset("labeled", "train", **args), load_dataset("labeled", "test", **args)
    assert (len(train), len(test)) == (16, 4)
    again = load_dataset("labeled", "test", **args)
    assert again.images.tobytes() == test.images.tobytes()  # the split is fixed by the seed


def test_bad_tables_name_the_file_row_and_column(table_root):
    bad = table_root / "bad.csv"
    cases = {
        "file,colour\nimg/0.png,red\n": "no 'path' column",
        "path,colour\nimg/0.png,\n": "column 'colour' is empty in row 1",
        "path,colour\nimg/404.png,red\n": "img/404.png",
        "path,colour,split\nimg/0.png,red,holdout\n": "split has values ['holdout']",
        "path\nimg/0.png\n": "no attribute columns",
    }
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_dataset("labeled", "train", root=table_root, image_size=8, labels=bad)


def test_config_needs_the_table_and_a_run_evaluates_every_attribute(table_root):
    with pytest.raises(ConfigError, match="data.labels: labeled needs the table"):
        load_config(overrides=["data.name=labeled"])
    with pytest.raises(ConfigError, match="data.labels: only used by data.name: labeled"):
        load_config(overrides=[f"data.labels={table_root / 'labels.csv'}"])
    cfg = load_config(overrides=["data.name=labeled", f"data.root={table_root}", f"data.labels={table_root / 'labels.csv'}",
                                 "data.train_size=null", "data.test_size=null", "data.image_size=8", "eval.knn_k=3",
                                 "eval.linear_epochs=5"])
    data = load_experiment_data(data_spec(cfg))
    flat = lambda s: s.images.reshape(len(s), -1).astype(np.float32)  # noqa: E731
    scores = evaluate(eval_spec(cfg), flat(data.probe), flat(data.test), data)
    assert set(scores) == {"colour", "size"} and scores["colour"]["knn"] == 1.0
