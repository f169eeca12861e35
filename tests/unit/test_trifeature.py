"""Trifeature generator: determinism, balance, resolution independence, that every attribute shows in
the pixels as the published design says, and the on-disk cache (round trip, corrupt file rebuilt)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcl_ray.data import trifeature as tf
from mcl_ray.data.registry import load_dataset
from mcl_ray.errors import DataError

BACKGROUND = np.round(np.array(tf.BACKGROUND) * 255) / 255  # as stored in uint8
PALETTE = np.array(list(tf.COLORS.values()))


@pytest.fixture(scope="module")
def every_combination():
    """One image of each of the 1000 combinations at 32 px."""
    return tf.generate_trifeature(1000, 32, seed=1)


def ink_coverage(images: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Fraction of each image covered by ink, read back from pixels: project (pixel - bg) on (colour - bg)."""
    direction = PALETTE[colors] - BACKGROUND
    offset = images.astype(np.float64) / 255 - BACKGROUND
    ink = np.einsum("nhwc,nc->nhw", offset, direction) / (direction**2).sum(-1)[:, None, None]
    return ink.mean(axis=(1, 2))


def test_same_seed_same_bytes_other_seed_other_images():
    a = tf.generate_trifeature(120, 16, seed=5)
    b = tf.generate_trifeature(120, 16, seed=5)
    c = tf.generate_trifeature(120, 16, seed=6)
    assert a.images.tobytes() == b.images.tobytes()
    for key in tf.ATTRIBUTES:
        np.testing.assert_array_equal(a.attributes[key], b.attributes[key])
    assert a.images.tobytes() != c.images.tobytes()


def test_every_combination_appears_n_over_1000_or_one_more_and_order_is_shuffled():
    s = tf.generate_trifeature(2300, 8, seed=0)
    combo = s.attributes["shape"] * 100 + s.attributes["texture"] * 10 + s.attributes["color"]
    counts = np.bincount(combo, minlength=1000)
    assert set(counts) == {2, 3} and counts.sum() == 2300
    # In the unshuffled cycle consecutive shapes always differ; shuffled, about 1 in 10 neighbours agree.
    assert 0.05 < np.mean(s.attributes["shape"][1:] == s.attributes["shape"][:-1]) < 0.2


@pytest.mark.parametrize("n", [1000, 250, 37])
def test_each_attribute_is_balanced_even_for_partial_cycles(n):
    s = tf.generate_trifeature(n, 8, seed=3)
    for key in tf.ATTRIBUTES:
        values = s.attributes[key]
        assert values.dtype == np.int64 and values.min() >= 0 and values.max() <= 9
        counts = np.bincount(values, minlength=10)
        assert counts.max() - counts.min() <= 1, (key, counts)
    if n == 1000:
        combo = s.attributes["shape"] * 100 + s.attributes["texture"] * 10 + s.attributes["color"]
        assert len(np.unique(combo)) == 1000


@pytest.mark.parametrize("size", [16, 32, 64])
def test_any_resolution_shows_the_same_scene(size):
    s = tf.generate_trifeature(40, size, seed=2)
    assert s.images.shape == (40, size, size, 3) and s.images.dtype == np.uint8
    # Geometry lives in published 224 px units, so a 2x box-downsample of 2*size matches size.
    big = tf.generate_trifeature(40, 2 * size, seed=2).images.astype(np.float64)
    down = big.reshape(40, size, 2, size, 2, 3).mean(axis=(2, 4))
    assert np.abs(down - s.images).mean() < 3.0
    for key in tf.ATTRIBUTES:
        np.testing.assert_array_equal(s.attributes[key], tf.generate_trifeature(40, 2 * size, 2).attributes[key])


def test_background_is_the_published_grey_and_solid_shapes_are_their_exact_colour():
    s = tf.generate_trifeature(1000, 64, seed=4)
    grey = np.round(np.array(tf.BACKGROUND) * 255)
    is_grey = np.all(s.images == grey, axis=-1).mean(axis=(1, 2))
    assert is_grey.min() > 0.5  # a shape covers at most 1/3 of the canvas (square at 0 degrees)
    exact_fractions = []
    for i in np.flatnonzero(s.attributes["texture"] == tf.TEXTURES.index("solid")):
        expected = PALETTE[s.attributes["color"][i]] * 255
        pixels = s.images[i].reshape(-1, 3).astype(np.float64)
        on_shape = pixels[np.any(np.abs(pixels - grey) > 1, axis=1)]
        values, counts = np.unique(on_shape, axis=0, return_counts=True)
        np.testing.assert_allclose(values[counts.argmax()], expected, atol=1)  # 1: rounding of x.5 values
        exact_fractions.append(np.all(np.abs(on_shape - expected) <= 1, axis=1).mean())
    assert np.mean(exact_fractions) > 0.7  # the rest are anti-aliased edges


def test_colour_sets_the_ink_direction(every_combination):
    s = every_combination
    offset = s.images.astype(np.float64) / 255 - BACKGROUND
    for c, rgb in enumerate(PALETTE):
        total = offset[s.attributes["color"] == c].sum(axis=(0, 1, 2))
        direction = rgb - BACKGROUND
        cosine = total @ direction / (np.linalg.norm(total) * np.linalg.norm(direction))
        assert cosine > 0.999, (list(tf.COLORS)[c], cosine)
    # Same shape and texture, different colour -> different mean colour.
    same = (s.attributes["shape"] == 0) & (s.attributes["texture"] == 0)
    means = s.images[same].reshape(same.sum(), -1, 3).mean(axis=1)
    assert len(np.unique(np.round(means), axis=0)) == 10


def test_shape_sets_the_published_area(every_combination):
    s = every_combination
    coverage = ink_coverage(s.images, s.attributes["color"])
    solid = s.attributes["texture"] == tf.TEXTURES.index("solid")
    canvas = tf.CANVAS**2
    expected = {"square": 128**2 / canvas, "circle": math.pi * 64**2 / canvas, "triangle": 128**2 / 2 / canvas}
    for name, area in expected.items():
        measured = coverage[solid & (s.attributes["shape"] == tf.SHAPES.index(name))].mean()
        assert measured == pytest.approx(area, rel=0.03), name


def test_texture_sets_the_published_ink_density(every_combination):
    s = every_combination
    coverage = ink_coverage(s.images, s.attributes["color"])
    solid = coverage[s.attributes["texture"] == 0].mean()
    # stripes: 3 of every 10 rows; grid: 1 - 0.7^2; noise: p=0.5; rain: 1 - 0.95^7 (5% starts, 7 long).
    expected = {"stripes": 0.3, "grid": 0.51, "noise": 0.5, "rain": 1 - 0.95**7}
    for name, density in expected.items():
        measured = coverage[s.attributes["texture"] == tf.TEXTURES.index(name)].mean() / solid
        assert measured == pytest.approx(density, abs=0.02), name


def reference_template(name: str, size: int = 128) -> np.ndarray:
    """The published per-pixel template rules, written as plain loops."""
    shape = np.zeros((size, size), bool)
    for i in range(size):
        for j in range(size):
            if name == "square":
                on = True
            elif name == "circle":
                on = (i + 0.5 - size // 2) ** 2 + (j + 0.5 - size // 2) ** 2 < (size // 2) ** 2
            elif name == "triangle":
                on = abs(j - size // 2) - abs(i // 2) < 1
            elif name in ("plus", "tee"):
                vertical = size // 2 - size // 6 <= j < size // 2 + size // 6 + 1
                if name == "plus":
                    on = vertical or size // 2 - size // 6 <= i < size // 2 + size // 6 + 1
                else:
                    on = vertical or i < size // 3
            elif name == "rhombus":
                on = 0 < j - size // 2 + i // 2 < size // 2
            elif name == "pentagon":
                midline = int(size * 0.4)
                if i < midline:
                    on = abs(j - size // 2) - abs(i * 1.25) < 1
                else:
                    x_off = (i - midline) // 3.1
                    on = x_off < j < size - x_off
            elif name == "star":
                line = int(size * 0.4)
                line2, line3 = line + int(0.2 * size), line + int(0.15 * size)
                on = False
                if i < line:
                    on = abs(j - size // 2) - abs(i // 4) < 1
                if line <= i < line2:
                    on = on or (i - line) * 2.4 < j < size - (i - line) * 2.4
                if i >= line3:
                    x1, x2 = size * 0.33 - 0.43 * (i - line3), size * 0.62 - 1.05 * (i - line3)
                    on = on or x1 < j < x2 or x1 < size - j < x2
            elif name == "fivesquare":
                in_row, in_col = size // 3 <= i < 2 * size // 3, size // 3 <= j < 2 * size // 3
                on = in_row == in_col
            elif name == "trapezoid":
                on = i // 3.1 < j < size - i // 3.1
            shape[i, j] = on
    return shape


@pytest.mark.parametrize("name", tf.SHAPES)
def test_templates_follow_the_published_rules(name):
    np.testing.assert_array_equal(tf._template(name), reference_template(name))


def reference_texture(name: str, y: int, x: int) -> bool:
    """The published per-pixel texture rules (offsets already added), as plain Python."""
    scale, lwidth, small = 10, 3, 2
    yy, xx = y % scale, x % scale
    if name == "solid":
        return True
    if name == "stripes":
        return yy < lwidth
    if name == "grid":
        return yy < lwidth or xx < lwidth
    if name == "hexgrid":
        return (x + int(1.73 * y)) % scale < small or (x - int(1.73 * y)) % scale < small or y % scale < small
    if name == "dots":
        return (xx - 5) ** 2 + (yy - 5) ** 2 < (3 * scale // 7) ** 2
    if name == "triangles":
        return yy // 2 - abs(xx - 5) > 0
    if name == "zigzags":
        if (y // scale) % 2:
            xx = scale - xx - 1
        return yy // 2 < xx < 5 + yy // 2
    if name == "pluses":
        if (y // scale) % 2:
            return abs(xx) < 1.5 or scale - xx < 1.5 or (abs(yy - 5) < 1.5 and abs(xx - 5) > 1.5)
        return abs(xx - 5) < 1.5 or abs(yy - 5) < 1.5
    raise AssertionError(name)


@pytest.mark.parametrize("name", [t for t in tf.TEXTURES if t not in ("noise", "rain")])
def test_periodic_textures_follow_the_published_rules(name):
    y, x = np.indices((45, 45))
    expected = np.vectorize(lambda a, b: reference_texture(name, a, b))(y, x)
    np.testing.assert_array_equal(tf._periodic_texture(name, y, x), expected)


def test_cache_round_trip_and_key(tmp_path, monkeypatch):
    first = tf.load_trifeature(30, 16, 7, cache_dir=tmp_path)
    stem = f"trifeature_n30_px16_seed7_v{tf.GENERATOR_VERSION}"
    assert sorted(f.name for f in tmp_path.iterdir()) == [f"{stem}.images.npy", f"{stem}.npz"]

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(tf, "generate_trifeature", no_generation)
    again = tf.load_trifeature(30, 16, 7, cache_dir=tmp_path)
    assert isinstance(again.images, np.memmap) and not again.images.flags.writeable  # mapped, not copied
    assert again.images.tobytes() == first.images.tobytes()
    for key in tf.ATTRIBUTES:
        np.testing.assert_array_equal(again.attributes[key], first.attributes[key])


@pytest.mark.parametrize("target, damage", [
    ("npz", "truncate"), ("npz", "garbage"), ("npz", "empty"),
    ("images.npy", "truncate"), ("images.npy", "flip"), ("images.npy", "delete"),
])
def test_corrupt_cache_is_regenerated_with_a_warning(tmp_path, target, damage):
    fresh = tf.load_trifeature(30, 16, 7, cache_dir=tmp_path)
    (path,) = [p for p in tmp_path.iterdir() if p.name.endswith("." + target)]
    marker = next(p for p in tmp_path.iterdir() if p.name.endswith(".npz"))
    names = sorted(p.name for p in tmp_path.iterdir())
    data = path.read_bytes()
    if damage == "delete":
        path.unlink()
    elif damage == "flip":  # same size, different bytes at the end: the checksum catches it
        path.write_bytes(data[:-5] + bytes(b ^ 0xFF for b in data[-5:]))
    else:
        path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a zip" * 50, "empty": b""}[damage])
    with pytest.warns(UserWarning, match=marker.name.replace(".", r"\.")):
        rebuilt = tf.load_trifeature(30, 16, 7, cache_dir=tmp_path)
    assert rebuilt.images.tobytes() == fresh.images.tobytes()
    assert path.read_bytes() == data  # rewritten whole
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary files left behind


def test_train_and_test_splits_are_different_images(tmp_path):
    train = load_dataset("trifeature", "train", root=tmp_path, image_size=16, size=300, seed=0)
    test = load_dataset("trifeature", "test", root=tmp_path, image_size=16, size=300, seed=0)
    assert not {im.tobytes() for im in train.images} & {im.tobytes() for im in test.images}
    assert train.name == "trifeature-train" and test.name == "trifeature-test"


def test_shape_scale_jitter_changes_the_area_only_when_asked():
    plain = tf.generate_trifeature(200, 32, seed=8)
    small = tf.generate_trifeature(200, 32, seed=8, shape_scale=(0.5, 0.5))
    ratio = ink_coverage(small.images, small.attributes["color"]).sum() / ink_coverage(
        plain.images, plain.attributes["color"]
    ).sum()
    assert ratio == pytest.approx(0.25, rel=0.1)


@pytest.mark.parametrize(
    "kwargs, field",
    [(dict(n=0, image_size=16, seed=0), "n"), (dict(n=10, image_size=-3, seed=0), "image_size"),
     (dict(n=10, image_size=16, seed=-1), "seed"),
     (dict(n=10, image_size=16, seed=0, shape_scale=(1.0, 2.0)), "shape_scale")],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(DataError, match=field):
        tf.generate_trifeature(**kwargs)
