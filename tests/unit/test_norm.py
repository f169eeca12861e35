"""model.norm: group — no BatchNorm left, every sample's features independent of its batch, keys unchanged at default."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from mcl_ray.config.loader import build_config
from mcl_ray.errors import ConfigError
from mcl_ray.models.encoder import build_encoder
from mcl_ray.models.norm import batch_free, groups_for
from mcl_ray.models.spec import ModelSpec
from mcl_ray.plan.from_config import model_spec


def _spec(norm: str) -> ModelSpec:
    return ModelSpec(backbone="test_resnet", image_size=32, proj_hidden_dim=32, proj_dim=16, norm=norm)


def test_group_norm_encoder_has_no_batchnorm_and_ignores_the_rest_of_the_batch():
    torch.manual_seed(0)
    batch = build_encoder(_spec("batch")).train()
    group = build_encoder(_spec("group")).train()
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in batch.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in group.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in group.backbone.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in group.projector.modules())
    x = torch.randn(6, 3, 32, 32)
    others = torch.randn(6, 3, 32, 32) * 3 + 1  # a very different rest of the batch
    for enc, independent in ((group, True), (batch, False)):
        _, z_alone = enc(x)
        _, z_mixed = enc(torch.cat([x[:3], others]))
        assert torch.allclose(z_alone[:3], z_mixed[:3], atol=1e-5) is independent
    # the same trainable parameter count: BN's affine weights became GroupNorm's
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(batch) == count(group)


def test_batch_free_carries_the_affine_weights():
    bn = nn.BatchNorm2d(12)
    bn.weight.data.uniform_()
    bn.bias.data.uniform_()
    gn = batch_free(nn.Sequential(bn))[0]
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 12
    assert torch.equal(gn.weight, bn.weight) and torch.equal(gn.bias, bn.bias)


@pytest.mark.parametrize("channels,groups", [(64, 32), (48, 24), (12, 12), (7, 7), (34, 17), (1, 1)])
def test_groups_for(channels, groups):
    assert groups_for(channels) == groups and channels % groups == 0


def test_norm_is_a_checked_field_and_enters_the_key_only_when_set():
    with pytest.raises(ConfigError, match="model.norm"):
        build_config({"model": {"norm": "layer"}})
    default = model_spec(build_config({}))
    assert "norm" not in default.identity()  # stage keys of existing runs stay valid
    assert model_spec(build_config({"model": {"norm": "group"}})).identity()["norm"] == "group"
