"""Batched SimCLR augmentation: shapes, per-sample randomness, exact identities, references, validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from mcl_ray.data.augment import (
    AugmentSpec,
    BatchAugment,
    adjust_hue,
    crop_flip_resize,
    jitter_colors,
    normalize_batch,
    sample_crop_boxes,
    validate_spec,
)
from mcl_ray.errors import ConfigError, DataError

IDENTITY = dict(crop_scale=(1.0, 1.0), hflip=0.0, jitter_strength=0.0, grayscale=0.0, blur=0.0)


def random_images(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("layout", ["hwc_uint8", "chw_uint8", "chw_float"])
def test_output_shape_dtype_and_range(layout: str) -> None:
    images = random_images(6, 40)
    if layout != "hwc_uint8":
        images = images.permute(0, 3, 1, 2)
    if layout == "chw_float":
        images = images.float() / 255
    out = BatchAugment(AugmentSpec(crop_size=32, blur=0.5))(images)
    assert out.shape == (6, 3, 32, 32)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5  # [0, 1] normalised by mean = std = 0.5


def test_both_layouts_give_the_same_views_under_the_same_seed() -> None:
    images = random_images(4)
    augment = BatchAugment(AugmentSpec(crop_size=32))
    torch.manual_seed(3)
    hwc = augment(images)
    torch.manual_seed(3)
    chw = augment(images.permute(0, 3, 1, 2).contiguous())
    torch.testing.assert_close(hwc, chw)


def test_every_sample_gets_its_own_parameters() -> None:
    same = random_images(1).expand(16, -1, -1, -1)
    out = BatchAugment(AugmentSpec(crop_size=32))(same)
    flat = out.flatten(1)
    distinct = {tuple(row.tolist()) for row in flat.round(decimals=4)}
    assert len(distinct) == 16


def test_flip_only_gives_the_image_or_its_mirror_and_both_occur() -> None:
    images = random_images(1).expand(64, -1, -1, -1)
    spec = AugmentSpec(crop_size=32, **{**IDENTITY, "hflip": 0.5})
    out = BatchAugment(spec)(images)
    plain = normalize_batch(images, spec)
    mirror = plain.flip(-1)
    is_plain = (out - plain).abs().amax(dim=(1, 2, 3)) < 1e-5
    is_mirror = (out - mirror).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert bool((is_plain | is_mirror).all())
    assert 0 < int(is_plain.sum()) < 64


def test_identity_settings_equal_normalize_batch() -> None:
    images = random_images(300)  # more than one CPU chunk
    spec = AugmentSpec(crop_size=32, **IDENTITY)
    torch.testing.assert_close(BatchAugment(spec)(images), normalize_batch(images, spec), atol=1e-5, rtol=0)


def test_identity_settings_on_larger_images_are_a_plain_bilinear_resize() -> None:
    images = random_images(4, 48)
    spec = AugmentSpec(crop_size=32, **IDENTITY)
    x = images.permute(0, 3, 1, 2).float() / 255
    reference = (F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False) - 0.5) / 0.5
    torch.testing.assert_close(BatchAugment(spec)(images), reference, atol=1e-5, rtol=0)
    assert normalize_batch(images, spec).shape == (4, 3, 32, 32)


def test_grayscale_one_makes_channels_equal() -> None:
    out = BatchAugment(AugmentSpec(crop_size=32, grayscale=1.0))(random_images(8))
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 1], out[:, 2], atol=1e-6, rtol=0)


def test_reproducible_under_manual_seed() -> None:
    images = random_images(8)
    augment = BatchAugment(AugmentSpec(crop_size=32, blur=0.5))
    torch.manual_seed(7)
    first = augment(images)
    torch.manual_seed(7)
    again = augment(images)
    torch.manual_seed(8)
    other = augment(images)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_normalize_batch_matches_reference_and_leaves_float_input_alone() -> None:
    images = random_images(3)
    spec = AugmentSpec(crop_size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    x = images.permute(0, 3, 1, 2).double() / 255
    mean = torch.tensor(spec.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize_batch(images, spec), ((x - mean) / std).float(), atol=1e-5, rtol=0)
    floats = x.float().contiguous()
    before = floats.clone()
    normalize_batch(floats, spec)
    assert torch.equal(floats, before)


def test_crop_box_samples_the_right_pixels_and_flip_mirrors_them() -> None:
    x = torch.rand(2, 3, 32, 32)
    boxes = torch.tensor([[8.0, 4.0, 16.0, 16.0], [0.0, 16.0, 16.0, 16.0]])
    out = crop_flip_resize(x, boxes, torch.tensor([False, True]), 16)
    torch.testing.assert_close(out[0], x[0, :, 4:20, 8:24], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], x[1, :, 16:32, 0:16].flip(-1), atol=1e-5, rtol=0)


def test_crop_boxes_follow_random_resized_crop_rules() -> None:
    torch.manual_seed(0)
    x0, y0, w, h = sample_crop_boxes(4000, 32, 48, (0.2, 0.6), torch.device("cpu")).unbind(1)
    assert bool((x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 48 + 1e-4).all() and (y0 + h <= 32 + 1e-4).all())
    area = w * h / (32 * 48)
    ratio = w / h
    sampled = (area >= 0.2 - 1e-4) & (area <= 0.6 + 1e-4) & (ratio >= 0.75 - 1e-4) & (ratio <= 4 / 3 + 1e-4)
    assert float(sampled.float().mean()) > 0.99  # the rest are centre-crop fallbacks
    full = sample_crop_boxes(10, 32, 32, (1.0, 1.0), torch.device("cpu"))
    torch.testing.assert_close(full, torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(10, 4))


def test_hue_rotation_matches_torchvision() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 3, 12, 12)
    x[0] = x[0, :1]  # grey pixels (zero chroma)
    x[1, 1] = x[1, 0]  # ties between the max channels
    shift = torch.tensor([0.3, -0.5, 0.5, 0.0, 0.1, -0.25])
    reference = torch.stack([TF.adjust_hue(img, float(s)) for img, s in zip(x, shift)])
    torch.testing.assert_close(adjust_hue(x, shift), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]])
def test_colour_jitter_matches_torchvision_for_given_factors(order: list[int]) -> None:
    torch.manual_seed(1)
    x = torch.rand(4, 3, 10, 10)
    b, c, s = (torch.tensor(v) for v in ([0.6, 1.4, 1.0, 0.9], [1.3, 0.6, 1.0, 1.1], [0.0, 1.4, 1.0, 0.7]))
    hue = torch.tensor([0.1, -0.1, 0.0, 0.05])
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    reference = []
    for i, img in enumerate(x):
        for op in order:
            img = ops[op](img, float((b, c, s, hue)[op][i]))
        reference.append(img)
    torch.testing.assert_close(jitter_colors(x, b, c, s, hue, order), torch.stack(reference), atol=1e-5, rtol=0)


def test_full_jitter_changes_colours_but_not_layout() -> None:
    images = random_images(16)
    spec = AugmentSpec(crop_size=32, **{**IDENTITY, "jitter_strength": 1.0, "jitter_prob": 1.0})
    out = BatchAugment(spec)(images)
    plain = normalize_batch(images, spec)
    assert bool(((out - plain).abs().amax(dim=(1, 2, 3)) > 1e-3).all())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("crop_size", 4),
        ("crop_size", 32.0),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.8, 0.2)),
        ("crop_scale", (0.5, 1.5)),
        ("hflip", 1.5),
        ("jitter_prob", -0.1),
        ("grayscale", 2),
        ("blur", -1.0),
        ("jitter_strength", -0.5),
        ("jitter_strength", float("nan")),
        ("std", (0.5, 0.0, 0.5)),
        ("mean", (0.5, 0.5)),
    ],
)
def test_validation_names_the_field(field: str, value: object) -> None:
    spec = dataclasses.replace(AugmentSpec(crop_size=32), **{field: value})
    with pytest.raises(ConfigError, match=rf"AugmentSpec\.{field}\b"):
        validate_spec(spec)
    with pytest.raises(ConfigError, match=rf"AugmentSpec\.{field}\b"):
        BatchAugment(spec)


def test_default_spec_is_valid() -> None:
    validate_spec(AugmentSpec(crop_size=8))


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(2, 32, 32, 4, dtype=torch.uint8), torch.zeros(32, 32, 3), torch.zeros(2, 3, 8, 8, dtype=torch.int32)],
)
def test_bad_images_raise_data_error(bad: torch.Tensor) -> None:
    with pytest.raises(DataError, match="images"):
        BatchAugment(AugmentSpec(crop_size=32))(bad)
