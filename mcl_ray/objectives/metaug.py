"""MetAug (Li et al., ICML 2022): meta feature augmentation with MCL's group mask.

Per view, a generator MLP (proj_dim -> hidden -> hidden -> proj_dim, L2-normalised) maps the encoder's
projection z_v to a generated feature g_v. Every loss is the circle-style *unified* loss

    L_a = log(1 + sum_p sum_n exp(gamma (s'_n - s'_p))),  s' = (s + 1) / 2,

per anchor a over its positives p and negatives n (cosine similarities s). The layout is SimCLR's: the 2B
anchors are both views of every local sample, the candidates are both views of the (gathered, global) batch,
anchor i's positive is its other view and its negatives are the other samples' embeddings *of its own MCL
group* (the same mask as `simclr.nt_xent_logits`). The three terms:

- unified: the unified loss of the original projections;
- augmented: the same loss with each anchor replaced by its generated feature (g_v(i) against the original
  candidates, positive z_other(i); the generator's own input z_v(i) is neither positive nor negative, as in the
  released code, which compares a generated view only with the other views). Cross-rank and cross-group
  pairs follow the same mask, so generated negatives stay inside the anchor's group;
- margin: the margin-injected regulariser (below).

Bi-level update, one batch:
1. forward() returns loss = unified + augmented_weight * augmented + margin_weight * margin for the trainer's
   optimizer. The generators get no gradient from it (their weights enter as separate leaves, not as the
   module's parameters); the encoder gets gradient through them (through their input).
2. after_step() (the trainer calls it after its optimizer step) updates only the generators by
   d L(theta', phi) / d phi, where theta' = theta_t - virtual_lr * g_t is a virtual SGD step from this step's
   encoder weights theta_t along this step's encoder gradient g_t = grad_theta L(theta_t, phi) (the
   parameters' .grad the trainer back-propagated, DDP-averaged), differentiated through theta' (second
   order), with the method's own SGD optimizer (lr / momentum / weight decay of the paper).

How the second-order gradient is computed (`generator_gradients`): differentiating through theta' literally
(create_graph over the encoder, then a double backward through it) cost about 5.5x a SimCLR step on CPU. It
is the same number as dL/dphi|theta' - virtual_lr * d/dphi[(dL/dz)(z_t, phi) . J v] with J = dz/dtheta at
theta_t and v = dL/dtheta' (the chain rule through g_t = J^T dL/dz), so after_step needs one forward and
backward at theta' (`torch.func.functional_call` on leaf copies), one forward-mode pass J v
(`torch.autograd.forward_ad`) and a double backward through the loss head and the generators only; forward()
keeps dL/dz with its graph in phi (create_graph through the head only) and sends it into the encoder through
a surrogate whose value is L and whose gradient is exactly J^T dL/dz. About 3.4x SimCLR in all; the unit
tests compare the result with the literal create_graph computation in float64. BatchNorm running statistics
are untouched by step 2 (the functional calls get clones of the buffers). When regularisers are mixed in,
g_t is the gradient of the trainer's whole loss; the factor its mix puts on this method's loss (1 - their
weights) is read off by a backward hook, so the derivative through theta' stays exact. Grad clipping, if on,
rescales g_t; the clip factor is then treated as a constant.

Order: the released code re-runs the batch after the encoder update and takes the virtual step from the
updated theta_{t+1}. Here the virtual step starts from theta_t, the weights the encoder step itself used,
which is what lets step 2 reuse the trainer's forward and gradient (a fresh forward and backward at theta_{t+1}
would cost another ~1x SimCLR step).

Distributed (DDP) design. The generators are registered submodules (so `.to()`, `state_dict()` and DDP's
initial broadcast from rank 0 cover them) whose parameters have requires_grad=False, like MoCo's momentum
encoder: the trainer's timm optimizer skips them, DDP's reducer does not expect a gradient for them (no
find_unused_parameters needed), and grad clipping never sees one (their .grad is set only inside after_step,
around the generator optimizer's step). Step 2 runs in after_step, outside DDP's forward/backward, on the
unwrapped encoder via functional_call with detached leaf copies of its weights, so it never touches DDP's
autograd hooks. Every rank runs it in lockstep (the trainer calls after_step on every rank): the gathered
losses route cross-rank gradients as in the encoder step, v is averaged across ranks (all_reduce), and the
generator gradients are all-reduced (averaged) before the SGD step, so the generators stay identical on every
rank and equal a single process's on the full batch (tests/integration/test_metaug_ddp.py). The first
training forward also broadcasts the generators from rank 0 once (DDP's constructor already does; this
covers other wrappers).

State: generator weights are ordinary parameters in state_dict(); the generator optimizer's state (momentum
buffers) travels as this module's extra state (`_extra_state`), so an epoch checkpoint of
objective.state_dict() resumes both. The optimizer's state is not a buffer on purpose: DDP re-broadcasts
every buffer at every forward, which would cost a copy of all generator weights per step.

Deviations from the released code (github.com/jiangmengli/metaug), on purpose:
- no BatchNorm1d in the generators: per-rank batch statistics would make the generated features depend on
  how the batch is split across workers (and break the distributed == single-process equality);
- two views with in-batch negatives instead of CMC's three colour views with a memory bank;
- term weights are ordinary mixing weights (defaults 0.1 / 0.1) instead of 1e-5 / 1e-11;
- the margin term follows the paper's formula (the released `margin_injection_loss_calc` is called with one
  argument too few and does not run; it also scaled its positive hinge by 1e-4 and averaged over all
  entries). Reading used here, per anchor with similarities mapped to s' = (s + 1) / 2 and thresholds from
  the *original* features (detached: they are thresholds, not targets):
      hardest positive hp = min_p s'_p,  hardest negative hn = max_n s'_n,
      gamma+ = min(hp, hn),  gamma- = max(hp, hn)   (the released default, margin_type 'large'),
      M_a = mean_p [s~'_p - gamma+]_+ + mean_n [gamma- - s~'_n]_+
  over the generated positives s~_p and negatives s~_n (same masks), so a generated positive must be less
  similar than every original pair and a generated negative more similar: generated features are forced to
  be hard, and the encoder cannot make them trivially easy (collapse). Anchors without a positive or a
  negative contribute 0.
- objective.temperature is not used; gamma sets the scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
import torch.autograd.forward_ad as fwAD
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.func import functional_call

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.objectives.base import ContrastiveMethod, check_groups
from mcl_ray.objectives.distributed import gather_no_grad, gather_sizes, gather_with_grad, is_distributed

__all__ = ["MetAug", "Generator", "unified_loss", "margin_loss", "metaug_terms"]


def _check_pairs(s_pos: Tensor, s_neg: Tensor, pos_mask: Tensor | None, neg_mask: Tensor | None) -> None:
    if s_pos.ndim != 2 or s_neg.ndim != 2 or s_pos.shape[0] != s_neg.shape[0]:
        raise DataError(f"s_pos, s_neg: expected [A, P] and [A, N] similarities, got {tuple(s_pos.shape)} and "
                        f"{tuple(s_neg.shape)}")
    for name, mask, ref in (("pos_mask", pos_mask, s_pos), ("neg_mask", neg_mask, s_neg)):
        if mask is not None and (mask.shape != ref.shape or mask.dtype != torch.bool):
            raise DataError(f"{name}: expected a bool tensor of shape {tuple(ref.shape)}, got {mask.dtype} "
                            f"{tuple(mask.shape)}")


def _all(mask: Tensor | None, like: Tensor) -> Tensor:
    return torch.ones_like(like, dtype=torch.bool) if mask is None else mask


def unified_loss(
    s_pos: Tensor, s_neg: Tensor, gamma: float, pos_mask: Tensor | None = None, neg_mask: Tensor | None = None
) -> Tensor:
    """Per-anchor unified loss [A]: log(1 + sum_p sum_n exp(gamma (s'_n - s'_p))) with s' = (s + 1) / 2.

    s_pos [A, P], s_neg [A, N]: cosine similarities of each anchor to its positives and negatives; the masks
    (True = included) exclude entries. Computed stably as softplus(logsumexp_n(gamma s'_n) +
    logsumexp_p(-gamma s'_p)); an anchor with no positive or no negative has loss 0 (and zero gradient).
    """
    _check_pairs(s_pos, s_neg, pos_mask, neg_mask)
    if not gamma > 0:
        raise ConfigError(f"objective.gamma: must be > 0, got {gamma}")
    dtype = torch.promote_types(torch.promote_types(s_pos.dtype, s_neg.dtype), torch.float32)
    pos_mask, neg_mask = _all(pos_mask, s_pos), _all(neg_mask, s_neg)
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    # rows without a positive or a negative are zeroed (finite) before logsumexp so no NaN gradient appears
    logit_p = (-gamma * (s_pos.to(dtype) + 1) / 2).masked_fill(~pos_mask, float("-inf"))
    logit_n = (gamma * (s_neg.to(dtype) + 1) / 2).masked_fill(~neg_mask, float("-inf"))
    logit_p = torch.where(valid[:, None], logit_p, torch.zeros_like(logit_p))
    logit_n = torch.where(valid[:, None], logit_n, torch.zeros_like(logit_n))
    loss = F.softplus(torch.logsumexp(logit_n, dim=1) + torch.logsumexp(logit_p, dim=1))
    return torch.where(valid, loss, torch.zeros_like(loss))


def margin_loss(
    s_pos: Tensor,
    s_neg: Tensor,
    gen_pos: Tensor,
    gen_neg: Tensor,
    pos_mask: Tensor | None = None,
    neg_mask: Tensor | None = None,
) -> Tensor:
    """Per-anchor margin-injected term [A] (see the module docstring for the reading of the paper's formula).

    s_pos [A, P], s_neg [A, N]: the original features' similarities, which set the thresholds (detached);
    gen_pos, gen_neg: the generated features' similarities in the same layout and under the same masks.
    With s' = (s + 1) / 2, hp = min_p s'_p, hn = max_n s'_n, gamma+ = min(hp, hn), gamma- = max(hp, hn):
    mean_p relu(gen'_p - gamma+) + mean_n relu(gamma- - gen'_n); 0 for anchors lacking a positive or negative.
    """
    _check_pairs(s_pos, s_neg, pos_mask, neg_mask)
    _check_pairs(gen_pos, gen_neg, pos_mask, neg_mask)
    if gen_pos.shape != s_pos.shape or gen_neg.shape != s_neg.shape:
        raise DataError(f"gen_pos, gen_neg: expected the shapes of s_pos, s_neg {tuple(s_pos.shape)}, "
                        f"{tuple(s_neg.shape)}, got {tuple(gen_pos.shape)}, {tuple(gen_neg.shape)}")
    dtype = torch.promote_types(torch.promote_types(gen_pos.dtype, gen_neg.dtype), torch.float32)
    pos_mask, neg_mask = _all(pos_mask, s_pos), _all(neg_mask, s_neg)
    n_pos, n_neg = pos_mask.sum(dim=1), neg_mask.sum(dim=1)
    valid = (n_pos > 0) & (n_neg > 0)
    with torch.no_grad():
        sp = (s_pos.to(dtype) + 1) / 2
        sn = (s_neg.to(dtype) + 1) / 2
        hardest_pos = sp.masked_fill(~pos_mask, float("inf")).amin(dim=1)
        hardest_neg = sn.masked_fill(~neg_mask, float("-inf")).amax(dim=1)
        upper = torch.minimum(hardest_pos, hardest_neg)  # gamma+: generated positives must stay below
        lower = torch.maximum(hardest_pos, hardest_neg)  # gamma-: generated negatives must stay above
        upper = torch.where(valid, upper, torch.zeros_like(upper))  # finite thresholds for invalid rows
        lower = torch.where(valid, lower, torch.zeros_like(lower))
    gp = (gen_pos.to(dtype) + 1) / 2
    gn = (gen_neg.to(dtype) + 1) / 2
    pos_term = (F.relu(gp - upper[:, None]) * pos_mask).sum(dim=1) / n_pos.clamp_min(1)
    neg_term = (F.relu(lower[:, None] - gn) * neg_mask).sum(dim=1) / n_neg.clamp_min(1)
    loss = pos_term + neg_term
    return torch.where(valid, loss, torch.zeros_like(loss))


@dataclass
class _Layout:
    """SimCLR's pair layout over this worker's 2B anchors and the (gathered) candidates."""

    anchors: Tensor  # [2B, D] normalised, rows [view1 of 0..B-1, view2 of 0..B-1]
    candidates: Tensor  # [N, D] normalised, the global batch in rank order when gathered
    positive: Tensor  # [2B] column of each anchor's positive (its other view)
    negatives: Tensor  # [2B, N] bool: other samples of the anchor's group
    reduce: Callable[[Tensor], Tensor]  # per-anchor [2B] -> scalar (mean, or the gathered-batch scaling)


def _layout(z1: Tensor, z2: Tensor, groups: Tensor | None, gather: bool) -> _Layout:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise DataError(f"z1, z2: expected two [B, D] tensors of equal shape, got {tuple(z1.shape)} and "
                        f"{tuple(z2.shape)}")
    check_groups(groups, z1.shape[0])
    batch = z1.shape[0]
    dtype = torch.promote_types(z1.dtype, torch.float32)
    local = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
    local_groups = None if groups is None else torch.cat([groups, groups])
    candidates, candidate_groups, offset, scale = local, local_groups, 0, None
    if gather and is_distributed():
        sizes = gather_sizes(2 * batch, local.device)
        scale = dist.get_world_size() / sum(sizes)
        offset = sum(sizes[: dist.get_rank()])
        candidates = gather_with_grad(local, sizes)
        if local_groups is not None:
            candidate_groups = gather_no_grad(local_groups, sizes)
    rows = torch.arange(2 * batch, device=local.device)
    positive = offset + (rows + batch) % (2 * batch)
    negatives = torch.ones(2 * batch, candidates.shape[0], dtype=torch.bool, device=local.device)
    if local_groups is not None:
        negatives = local_groups[:, None] == candidate_groups[None, :]
    negatives[rows, offset + rows] = False  # itself (for a generated anchor: its own generator input)
    negatives[rows, positive] = False
    reduce = (lambda losses: losses.mean()) if scale is None else (lambda losses: losses.sum() * scale)
    return _Layout(local, candidates, positive, negatives, reduce)


def metaug_terms(
    z1: Tensor,
    z2: Tensor,
    g1: Tensor,
    g2: Tensor,
    gamma: float,
    groups: Tensor | None = None,
    gather: bool = False,
) -> dict[str, Tensor]:
    """{'unified', 'augmented', 'margin'}: the three (unweighted) scalar terms for projections z1, z2 [B, D] and
    their generated features g1, g2 [B, D]. Each is the mean over this worker's 2B anchors, or with `gather` on
    several workers the sum scaled so that the workers' values (and gradients) averaged are the global batch's
    mean, as in `simclr.nt_xent_logits`."""
    if g1.shape != z1.shape or g2.shape != z2.shape:
        raise DataError(f"g1, g2: expected the shape of z1, z2 {tuple(z1.shape)}, got {tuple(g1.shape)}, "
                        f"{tuple(g2.shape)}")
    layout = _layout(z1, z2, groups, gather)
    rows = torch.arange(layout.anchors.shape[0], device=layout.anchors.device)
    generated = F.normalize(torch.cat([g1, g2]).to(layout.anchors.dtype), dim=1)
    sims = layout.anchors @ layout.candidates.T  # [2B, N]
    gen_sims = generated @ layout.candidates.T  # generated anchors against the original candidates
    s_pos, g_pos = sims[rows, layout.positive][:, None], gen_sims[rows, layout.positive][:, None]
    return {
        "unified": layout.reduce(unified_loss(s_pos, sims, gamma, neg_mask=layout.negatives)),
        "augmented": layout.reduce(unified_loss(g_pos, gen_sims, gamma, neg_mask=layout.negatives)),
        "margin": layout.reduce(margin_loss(s_pos, sims, g_pos, gen_sims, neg_mask=layout.negatives)),
    }


class Generator(nn.Sequential):
    """proj_dim -> hidden -> hidden -> proj_dim MLP with ReLUs, output L2-normalised (no BatchNorm: see the
    module docstring)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(super().forward(x), dim=1)


@torch.no_grad()
def _average_across_ranks(tensors: list[Tensor]) -> list[Tensor]:
    """Each tensor averaged over the ranks, in one collective (a flat concatenation)."""
    if not is_distributed() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat = flat / dist.get_world_size()
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def _directional(gz: Tensor, u: Tensor | None) -> Tensor:
    """sum(gz * u) in at least float32 (the forward-mode tangent u is None when z does not depend on the
    weights)."""
    if u is None:
        return gz.sum() * 0
    dtype = torch.promote_types(gz.dtype, torch.float32)
    return (gz.to(dtype) * u.to(dtype)).sum()


@dataclass
class _Pending:
    """One training step's inputs to the generator update (after_step)."""

    view1: Tensor
    view2: Tensor
    groups: Tensor | None
    theta: dict[str, Tensor]  # the trainable encoder weights theta_t, copied before the optimizer step
    phi: list[dict[str, Tensor]]  # the generator weight leaves the step's loss head used
    gz1: Tensor  # dL/dz1 at theta_t, with its graph in phi (create_graph)
    gz2: Tensor
    scale: Tensor | None = None  # d(trainer's loss)/d(method loss), set by the backward hook

    def capture_scale(self, grad: Tensor) -> None:
        self.scale = grad.detach().sum()


class MetAug(ContrastiveMethod):
    """MetAug around `encoder` (its projections of two views); see the module docstring for the design.

    `proj_dim` (the generators' input and output size) defaults to `encoder.proj_dim`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        temperature: float,
        gather: bool = False,
        gamma: float = 16.0,
        generator_hidden: int = 2048,
        augmented_weight: float = 0.1,
        margin_weight: float = 0.1,
        generator_lr: float = 0.03,
        generator_momentum: float = 0.9,
        generator_weight_decay: float = 1e-4,
        virtual_lr: float = 0.03,
        proj_dim: int | None = None,
    ) -> None:
        super().__init__(encoder, temperature=temperature, gather=gather)
        checks = {
            "gamma": gamma > 0, "generator_hidden": generator_hidden >= 1, "augmented_weight": 0 <= augmented_weight <= 1,
            "margin_weight": margin_weight >= 0, "generator_lr": generator_lr > 0,
            "generator_momentum": 0 <= generator_momentum < 1, "generator_weight_decay": generator_weight_decay >= 0,
            "virtual_lr": virtual_lr > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"objective.{name}: out of range, got {locals()[name]}")
        dim = proj_dim if proj_dim is not None else getattr(encoder, "proj_dim", None)
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"objective.proj_dim: needed to size the MetAug generators; the encoder has no integer "
                              f"`proj_dim` attribute (got {dim!r}), pass proj_dim")
        self.gamma = float(gamma)
        self.augmented_weight = float(augmented_weight)
        self.margin_weight = float(margin_weight)
        self.virtual_lr = float(virtual_lr)
        self.generators = nn.ModuleList([Generator(dim, int(generator_hidden)) for _ in range(2)]).requires_grad_(False)
        self.generator_optimizer = torch.optim.SGD(self.generators.parameters(), lr=float(generator_lr),
                                                   momentum=float(generator_momentum),
                                                   weight_decay=float(generator_weight_decay))
        self._pending: _Pending | None = None
        self._generators_synced = False
        self.last_generator_loss: float | None = None

    # -- losses ---------------------------------------------------------------------------------------------

    def _generate(self, zs: tuple[Tensor, Tensor], weights: list[dict[str, Tensor]] | None) -> tuple[Tensor, Tensor]:
        """Each view's generated features; `weights` None: the generators' own weights, detached (no gradient
        to the generators, gradient to z)."""
        if weights is None:
            weights = [{n: p.detach() for n, p in g.named_parameters()} for g in self.generators]
        g1, g2 = (functional_call(gen, w, (z,)) for gen, w, z in zip(self.generators, weights, zs))
        return g1, g2

    def _losses(self, z1: Tensor, z2: Tensor, groups: Tensor | None, weights=None) -> dict[str, Tensor]:
        terms = metaug_terms(z1, z2, *self._generate((z1, z2), weights), self.gamma, groups, gather=self.gather)
        terms["loss"] = (terms["unified"] + self.augmented_weight * terms["augmented"]
                         + self.margin_weight * terms["margin"])
        return terms

    def forward(self, view1: Tensor, view2: Tensor, groups: Tensor | None = None) -> dict[str, Tensor]:
        check_groups(groups, view1.shape[0])
        training = self.training and torch.is_grad_enabled()
        if training and not self._generators_synced:
            self._sync_generators()
        _, z1 = self.encoder(view1)
        _, z2 = self.encoder(view2)
        self._pending = None
        if not (training and z1.requires_grad and self._generators_learn()):
            terms = self._losses(z1, z2, groups)
            loss = terms["loss"]
        else:
            # The loss head (losses and generators) runs once, on leaf copies of the projections with the generator
            # weights as leaves: dL/dz is taken here with create_graph, reused by after_step (its derivative in
            # the generator weights is the second-order term), and sent into the encoder through a surrogate whose
            # value is L and whose gradient is exactly J^T dL/dz, the gradient of L itself.
            leaves = (z1.detach().requires_grad_(), z2.detach().requires_grad_())
            phi = [{n: p.detach().requires_grad_() for n, p in g.named_parameters()} for g in self.generators]
            terms = self._losses(*leaves, groups, phi)
            gz1, gz2 = torch.autograd.grad(terms["loss"], leaves, create_graph=True)
            link = (gz1.detach() * z1).sum() + (gz2.detach() * z2).sum()
            loss = terms["loss"].detach() + (link - link.detach())
            # what after_step() needs from this step: the batch, the weights theta_t (the optimizer step moves
            # them before after_step runs), dL/dz as a function of phi, and d(trainer's loss)/d(this loss)
            pending = _Pending(view1.detach(), view2.detach(), None if groups is None else groups.detach(),
                               {n: p.detach().clone() for n, p in self.encoder.named_parameters() if p.requires_grad},
                               phi, gz1, gz2)
            loss.register_hook(pending.capture_scale)
            self._pending = pending
        return {"loss": loss, "projections": (z1, z2),
                **{name: terms[name].detach() for name in ("unified", "augmented", "margin")}}

    def _generators_learn(self) -> bool:
        """With both weights 0 the generators touch no loss: nothing to learn, step 2 is skipped."""
        return self.augmented_weight > 0 or self.margin_weight > 0

    # -- generator update -----------------------------------------------------------------------------------

    @torch.no_grad()
    def _sync_generators(self) -> None:
        """Rank 0's generators (and their optimizer's momentum) everywhere, once (DDP's constructor already
        broadcasts parameters; this also covers use without it)."""
        if is_distributed():
            tensors = list(self.generators.parameters())
            tensors += [s["momentum_buffer"] for s in self.generator_optimizer.state.values()
                        if s.get("momentum_buffer") is not None]
            flat = torch.cat([t.reshape(-1) for t in tensors])
            dist.broadcast(flat, src=0)
            for part, t in zip(flat.split([t.numel() for t in tensors]), tensors):
                t.copy_(part.view_as(t))
        self._generators_synced = True

    def after_step(self) -> None:
        """Step 2 of the bi-level update for the last training forward, once the trainer has back-propagated
        (and stepped): see generator_gradients. Skipped when no backward reached this method's loss."""
        pending, self._pending = self._pending, None
        if pending is None or pending.scale is None:
            return
        loss, grads = self.generator_gradients(pending)
        params = list(self.generators.parameters())
        for p, g in zip(params, grads):
            p.grad = g.to(p.dtype)
        self.generator_optimizer.step()
        for p in params:
            p.grad = None  # never seen by the trainer's clipping or optimizer
        self.last_generator_loss = float(loss)

    def _project(self, weights: dict[str, Tensor], fixed: dict[str, Tensor], view: Tensor) -> Tensor:
        return functional_call(self.encoder, {**fixed, **weights}, (view,))[1]

    def generator_gradients(self, pending: "_Pending") -> tuple[Tensor, list[Tensor]]:
        """(L(theta', phi), dL(theta', phi)/dphi averaged over ranks) for the generator weights phi, with the
        virtual step theta' = theta_t - virtual_lr * g_t from the weights theta_t and the encoder gradient g_t
        of the trainer's step (the parameters' .grad, averaged across ranks by DDP).

        Exact second order without back-propagating twice through the encoder. g_t = J^T (s * dL/dz) + terms
        that do not depend on phi (regularisers), where J = dz/dtheta at theta_t and s = d(trainer's
        loss)/d(this loss) (1, or 1 - regulariser weights), so

            dL(theta', phi)/dphi = dL/dphi|theta' + (dtheta'/dphi)^T v
                                 = dL/dphi|theta' - virtual_lr * s * d/dphi [ (dL/dz)(z_t, phi) . (J v) ],

        with v = dL/dtheta' (averaged across ranks). J v is one forward-mode pass of the encoder
        (torch.autograd.forward_ad through functional_call), the last derivative a double backward through the
        loss head and the generators only (dL/dz was kept with its graph by forward()). This equals
        differentiating through theta' = theta - alpha * grad_theta L with create_graph (tested against it) at
        about half the cost on CPU.
        """
        encoder = self.encoder
        names = list(pending.theta)
        params = dict(encoder.named_parameters())
        fixed = {n: p.detach() for n, p in params.items() if n not in pending.theta}
        fixed.update({n: b.clone() for n, b in encoder.named_buffers()})  # BN statistics stay untouched
        step = [params[n].grad if params[n].grad is not None else torch.zeros_like(pending.theta[n]) for n in names]
        leaves = [p for weights in pending.phi for p in weights.values()]

        with torch.enable_grad():
            # the loss at theta' and its gradients: v for the encoder, the direct part for the generators
            virtual = {n: (pending.theta[n] - self.virtual_lr * g.detach()).requires_grad_() for n, g in zip(names, step)}
            z1 = self._project(virtual, fixed, pending.view1)
            z2 = self._project(virtual, fixed, pending.view2)
            outer = self._losses(z1, z2, pending.groups, pending.phi)["loss"]
            grads = torch.autograd.grad(outer, [*virtual.values(), *leaves], allow_unused=True)
            grads = [torch.zeros_like(x) if g is None else g for x, g in zip([*virtual.values(), *leaves], grads)]
            v, direct = _average_across_ranks(grads[: len(names)]), grads[len(names):]

            # J v at theta_t, one forward-mode pass per view
            # forward-mode AD has no rule for the fused attention kernels timm's ViTs and open_clip use: the math
            # kernel computes the same attention and supports it
            with torch.no_grad(), fwAD.dual_level(), sdpa_kernel(SDPBackend.MATH):
                dual = {n: fwAD.make_dual(pending.theta[n], t.to(pending.theta[n].dtype)) for n, t in zip(names, v)}
                u1 = fwAD.unpack_dual(self._project(dual, fixed, pending.view1)).tangent
                u2 = fwAD.unpack_dual(self._project(dual, fixed, pending.view2)).tangent

            # d/dphi of (dL/dz at z_t) . (J v): double backward through the loss head and the generators only
            gz1, gz2 = pending.gz1, pending.gz2
            directional = _directional(gz1, u1) + _directional(gz2, u2)
            meta = torch.autograd.grad(directional, leaves, allow_unused=True)

        coefficient = self.virtual_lr * pending.scale
        total = [d.detach() - coefficient * (torch.zeros_like(d) if m is None else m.detach())
                 for d, m in zip(direct, meta)]
        return outer.detach(), _average_across_ranks(total)

    # -- state ----------------------------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        return {"generator_optimizer": self.generator_optimizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])

    def extra_repr(self) -> str:
        group = self.generator_optimizer.param_groups[0]
        return (f"gather={self.gather}, gamma={self.gamma}, augmented_weight={self.augmented_weight}, "
                f"margin_weight={self.margin_weight}, virtual_lr={self.virtual_lr}, generator_lr={group['lr']}, "
                f"generator_momentum={group['momentum']}, generator_weight_decay={group['weight_decay']}")
