"""CLIP as an MCL base: the group-masked symmetric loss against a float64 loop, the tiny open_clip model offline,
the method's inputs and logit-scale clamp, and the config errors that keep image-text settings consistent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.objectives.clip import MAX_LOGIT_SCALE, clip_logits, clip_loss
from mcl_ray.plan.from_config import build_config, check_experiment

CLIP_CFG = {"model": {"backbone": "open_clip:mcl-tiny", "head": "none"}, "objective": {"name": "clip"},
            "data": {"name": "trifeature", "image_size": 16}}


def reference_clip_loss(image, text, logit_scale, groups=None) -> float:
    """The paper's formula, one anchor at a time in float64: mean over both directions of -log softmax of the
    positive among the anchor's same-group candidates."""
    img = image / np.linalg.norm(image, axis=1, keepdims=True)
    txt = text / np.linalg.norm(text, axis=1, keepdims=True)
    n, scale = len(img), math.exp(logit_scale)
    total = 0.0
    for anchors, candidates in ((img, txt), (txt, img)):
        for i in range(n):
            allowed = [j for j in range(n) if groups is None or groups[j] == groups[i]]
            logits = [scale * float(anchors[i] @ candidates[j]) for j in allowed]
            positive = scale * float(anchors[i] @ candidates[i])
            top = max(logits)
            total += -(positive - top - math.log(sum(math.exp(v - top) for v in logits))) / n
    return total / 2


@pytest.mark.parametrize("n,d,log_scale,grouped", [(2, 3, 0.0, False), (5, 4, 1.5, True), (9, 8, math.log(1 / 0.07), True),
                                                   (16, 5, 3.0, False), (7, 2, 0.5, True)])
def test_clip_loss_matches_a_float64_loop_over_anchors(n, d, log_scale, grouped):
    rng = np.random.default_rng(n * 10 + d)
    image, text = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    groups = rng.integers(0, 3, n) if grouped else None
    got = clip_loss(torch.from_numpy(image), torch.from_numpy(text), torch.tensor(log_scale, dtype=torch.float64),
                    None if groups is None else torch.from_numpy(groups))
    assert got.item() == pytest.approx(reference_clip_loss(image, text, log_scale, groups), rel=1e-9, abs=1e-12)


def test_other_groups_captions_and_images_do_not_change_the_loss():
    rng = np.random.default_rng(0)
    image, text = torch.from_numpy(rng.normal(size=(6, 4))), torch.from_numpy(rng.normal(size=(6, 4)))
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    scale = torch.tensor(2.0, dtype=torch.float64)
    before = clip_loss(image, text, scale, groups)
    changed_text, changed_image = text.clone(), image.clone()
    changed_text[3:] = torch.from_numpy(rng.normal(size=(3, 4)))
    changed_image[3:] = torch.from_numpy(rng.normal(size=(3, 4)))
    i2t, t2i = clip_logits(image, changed_text, scale, groups)
    # group 0's image->text terms see only group 0's captions, so replacing group 1's captions leaves them as they were
    i2t_before, _ = clip_logits(image, text, scale, groups)
    rows = torch.arange(3)
    torch.testing.assert_close(torch.logsumexp(i2t.logits[:3], 1), torch.logsumexp(i2t_before.logits[:3], 1))
    assert torch.isinf(i2t.logits[0, 3:]).all() and torch.isinf(t2i.logits[4, :3]).all()
    assert clip_loss(image, text, scale) != pytest.approx(before.item())  # without groups the other pairs count
    assert (i2t.positive[:3] == rows).all()


def test_clip_loss_rejects_mismatched_inputs():
    with pytest.raises(DataError, match="equal shape"):
        clip_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))
    with pytest.raises(DataError, match="groups"):
        clip_loss(torch.ones(3, 4), torch.ones(3, 4), torch.tensor(1.0), torch.zeros(2, dtype=torch.long))


def test_tiny_open_clip_trains_offline_and_clamps_its_logit_scale():
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.objectives.objective import build_objective
    from mcl_ray.plan.from_config import model_spec, objective_spec

    cfg = build_config(CLIP_CFG)
    encoder = build_encoder(model_spec(cfg))
    towers = encoder.backbone
    tokens = towers.tokenize(["red square with stripes texture", "blue circle with dots texture"])
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long
    objective = build_objective(objective_spec(cfg, 0), encoder)
    assert towers.logit_scale.item() == pytest.approx(math.log(1 / cfg.objective.temperature))
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    with pytest.raises(DataError, match="needs a caption"):
        objective.prepare(images, lambda x: x.permute(0, 3, 1, 2).float() / 255)
    inputs = objective.prepare(images, lambda x: x.permute(0, 3, 1, 2).float() / 255, tokens)
    out = objective(*inputs, groups=torch.tensor([0, 1]))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert towers.logit_scale.grad is not None and towers.model.token_embedding.weight.grad is not None
    with torch.no_grad():
        towers.logit_scale.fill_(10.0)
    objective.after_step()
    assert towers.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)
    h, z = encoder(inputs[0])
    assert h.shape == z.shape == (2, 64)


def test_locking_freezes_the_text_tower_only():
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.plan.from_config import model_spec

    cfg = build_config({**CLIP_CFG, "model": {**CLIP_CFG["model"], "lock_text": True}})
    towers = build_encoder(model_spec(cfg)).backbone
    assert not towers.model.token_embedding.weight.requires_grad
    assert all(p.requires_grad for p in towers.model.visual.parameters())


@pytest.mark.parametrize("change,field", [
    ({"model": {"backbone": "test_resnet", "head": "none"}}, "objective.name"),
    ({"model": {"backbone": "open_clip:mcl-tiny", "head": "simclr"}}, "model.head"),
    ({"data": {"name": "cifar10", "image_size": 16}}, "data.name"),
    ({"model": {"backbone": "open_clip:ViT-B-33", "head": "none"}}, "model.backbone"),
])
def test_inconsistent_image_text_settings_fail_at_validation(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        check_experiment(build_config({**CLIP_CFG, **change}))


@pytest.mark.parametrize("model,field", [({"pretrained": "openai"}, "model.pretrained"), ({"lock_text": True}, "model.lock_text"),
                                         ({"lock_image": 2}, "model.lock_image")])
def test_open_clip_only_settings_are_refused_for_timm_backbones(model, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        check_experiment(build_config({"model": {"backbone": "test_resnet", **model}}))


def test_a_pretrained_tag_on_the_tiny_model_is_refused():
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.plan.from_config import model_spec

    cfg = build_config({**CLIP_CFG, "model": {**CLIP_CFG["model"], "pretrained": "openai"}})
    with pytest.raises(ConfigError, match="no pretrained weights"):
        build_encoder(model_spec(cfg))


def test_a_timm_image_tower_pairs_with_an_open_clip_text_tower():
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.plan.from_config import model_spec

    cfg = build_config({**CLIP_CFG, "model": {"backbone": "open_clip:timm/test_resnet", "head": "none"}})
    check_experiment(cfg)
    encoder = build_encoder(model_spec(cfg))
    towers = encoder.backbone
    assert type(towers.model.visual).__name__ == "TimmModel"
    h, _ = encoder(torch.zeros(2, 3, 16, 16))
    text = towers.encode_text(towers.tokenize(["a red square", "a blue star"]))
    assert h.shape == text.shape == (2, 512)
    with pytest.raises(ConfigError, match="timm has no model"):
        check_experiment(build_config({**CLIP_CFG, "model": {"backbone": "open_clip:timm/resnet_nope", "head": "none"}}))


def test_pretrained_clip_towers_get_openai_normalisation_and_random_init_keeps_the_default():
    from mcl_ray.plan.from_config import CLIP_MEAN, augment_spec

    pretrained = build_config({**CLIP_CFG, "model": {"backbone": "open_clip:ViT-B-32", "pretrained": "openai", "head": "none"}})
    assert augment_spec(pretrained).mean == CLIP_MEAN
    assert augment_spec(build_config(CLIP_CFG)).mean == (0.5, 0.5, 0.5)
    siglip = build_config({**CLIP_CFG, "model": {"backbone": "open_clip:ViT-B-16-SigLIP", "pretrained": "webli", "head": "none"}})
    assert augment_spec(siglip).mean == (0.5, 0.5, 0.5)  # each tag's own statistics, from open_clip's config


def test_pretrained_timm_backbones_are_normalised_with_their_own_statistics():
    from mcl_ray.plan.from_config import augment_spec

    resnet = build_config({"model": {"backbone": "resnet18", "pretrained": True}, "data": {"image_size": 32}})
    spec = augment_spec(resnet)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406)) and spec.std == pytest.approx((0.229, 0.224, 0.225))
    tower = build_config({**CLIP_CFG, "model": {"backbone": "open_clip:timm/resnet18", "pretrained": True, "head": "none"}})
    assert augment_spec(tower).mean == pytest.approx((0.485, 0.456, 0.406))
    assert augment_spec(build_config({"model": {"backbone": "resnet18"}, "data": {"image_size": 32}})).mean == (0.5, 0.5, 0.5)


def test_ifm_perturbs_both_directions_of_the_clip_logits():
    from mcl_ray.objectives.regularizers.ifm import adversarial_loss

    rng = np.random.default_rng(3)
    image, text = torch.from_numpy(rng.normal(size=(6, 4))), torch.from_numpy(rng.normal(size=(6, 4)))
    scale = torch.tensor(math.log(10.0), dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    i2t, t2i = clip_logits(image, text, scale, groups)
    eps = 0.1
    # the reference: every candidate's cosine +eps, the positive's -eps, at the model's scale of 10
    img = torch.nn.functional.normalize(image, dim=1)
    txt = torch.nn.functional.normalize(text, dim=1)
    cos = img @ txt.T + eps
    cos[torch.arange(6), torch.arange(6)] -= 2 * eps
    logits = (10 * cos).masked_fill(groups[:, None] != groups[None, :], float("-inf"))
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(6))
    assert adversarial_loss(i2t, eps).item() == pytest.approx(expected.item(), rel=1e-9)
    assert adversarial_loss(t2i, eps).item() > t2i.loss().item()  # harder than the clean loss
