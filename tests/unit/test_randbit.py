"""RandBit: random bits in every image's bottom rows, identical in both augmented views, independent of content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcl_ray.data.augment import BatchAugment
from mcl_ray.data.base import ImageSet
from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.data.randbit import code_rows, draw_bits
from mcl_ray.errors import ConfigError, DataError
from mcl_ray.plan.from_config import augment_spec, data_spec, load_config


def _content(n=6, size=32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return ImageSet(images=images, attributes={"shape": np.arange(n) % 3}, name="content")


@pytest.mark.parametrize("bits", [1, 5, 8, 16])
def test_bits_are_drawn_as_cells_that_decode_to_the_code_attribute(bits):
    content = _content()
    out = draw_bits(content, bits, seed=3)
    rows = code_rows(32)
    assert out.fixed_rows == rows == 2
    np.testing.assert_array_equal(out.images[:, :-rows], content.images[:, :-rows])  # content untouched
    strip = out.images[:, -rows:]
    assert set(np.unique(strip).tolist()) <= {0, 255} and (strip == strip[:, :1]).all()  # every row the same
    cell_starts = [int(np.ceil(b * 32 / bits)) for b in range(bits)]
    decoded = (strip[:, 0, cell_starts, 0] // 255).astype(np.int64)
    np.testing.assert_array_equal((decoded << np.arange(bits)[::-1]).sum(1), out.attributes["code"])
    np.testing.assert_array_equal(out.attributes["shape"], content.attributes["shape"])
    np.testing.assert_array_equal(draw_bits(content, bits, seed=3).images, out.images)  # seeded
    with pytest.raises(DataError, match="data.bits"):
        draw_bits(content, 33, seed=0)


def test_both_augmented_views_keep_the_bits_exactly():
    torch.manual_seed(0)
    data = draw_bits(_content(n=8), 8, seed=1)
    spec = augment_spec(load_config(None, []))
    augment = BatchAugment(spec, fixed_rows=data.fixed_rows)
    batch = torch.from_numpy(data.images)
    v1, v2 = augment(batch), augment(batch)
    assert torch.equal(v1[:, :, -2:], v2[:, :, -2:])  # the shared, content-free feature
    expected = (batch[:, -2:].permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(v1[:, :, -2:], expected)
    assert not torch.allclose(v1[:, :, :-2], v2[:, :, :-2])  # the content is augmented as usual
    plain = BatchAugment(spec)(batch)
    assert not torch.equal(plain[:, :, -2:], v1[:, :, -2:])


def test_randbit_from_the_config_and_bits_only_for_randbit(tmp_path):
    cfg = load_config(None, ["data.name=randbit", "data.bits=4", "data.train_size=40", "data.test_size=20",
                             f"data.root={tmp_path}"])
    data = load_experiment_data(data_spec(cfg))
    assert set(data.pretrain.attributes) == {"shape", "texture", "color", "code"}
    assert data.pretrain.fixed_rows == 2 and data.pretrain.attributes["code"].max() < 16
    assert data_spec(cfg).identity()["bits"] == 4
    assert "bits" not in data_spec(load_config(None, [])).identity()  # other data sets' keys do not change
    with pytest.raises(ConfigError, match="data.bits: only used by data.name: randbit"):
        load_config(None, ["data.bits=4"])
