"""SimCLR augmentation applied to whole batches on the training device, each sample with its own random draw.

Images stay uint8 in memory (see ``ImageSet``); a training step moves one uint8 batch to the device and calls
``BatchAugment`` once per view. Random draws come from torch's default generators: the input's device for crop,
flip and jitter factors, the module's device for kornia's grayscale and blur, the CPU for the colour-op order.
``torch.manual_seed(s)`` seeds all of them, so a seeded call is reproducible for the same input shape, device type
and library versions (CPU and CUDA generators differ, so the same seed gives different views on each).

Which parts come from kornia and which are our own. Timings are ms per batch of 256 for one view, 1 torch thread,
on the shared 2-core CPU host (``python -m bench.augment``, median of 15):

* crop + flip: one ``F.grid_sample`` pass with a per-sample affine (the crop box, mirrored when flipped).
  kornia's ``RandomResizedCrop`` + ``RandomHorizontalFlip`` took 7.1 / 28.0 ms at 32 / 64 px against
  1.9 / 7.0 ms: two resampling/copy passes plus per-call transform-matrix bookkeeping.
* colour jitter: our own batched brightness/contrast/saturation/hue. kornia's ``ColorJitter`` took
  26.4 / 148 ms against 9.6 / 62 ms, mostly in the full RGB->HSV->RGB round trip for hue; the rotation here
  (``adjust_hue``) needs only max/min of the channels and matches torchvision's ``adjust_hue`` to 1e-5.
* grayscale and Gaussian blur: kornia (``RandomGrayscale``, ``RandomGaussianBlur``), which are cheap enough.

A whole view from uint8 took 14 / 52 ms against 40 / 208 ms for the all-kornia pipeline.

Semantics follow torchvision's ``RandomResizedCrop`` (area fraction and log-uniform aspect ratio in
[3/4, 4/3], ten tries then a centre crop) and ``ColorJitter`` (factors as torchvision; the four colour ops run in
one random order per call, shared by the batch, as in kornia and most GPU SimCLR code). Crop boxes are continuous
(no rounding to whole pixels), and sampling is bilinear without antialiasing, which only matters when the crop
region is much larger than ``crop_size`` (images stored larger than the training resolution).
"""

from __future__ import annotations

import math
from numbers import Real

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcl_ray.data.augment_spec import AugmentSpec
from mcl_ray.errors import ConfigError, DataError

__all__ = [
    "AugmentSpec", "BatchAugment", "normalize_batch", "validate_spec", "to_float_chw",
    "sample_crop_boxes", "crop_flip_resize", "adjust_hue", "jitter_colors", "color_jitter", "blur_kernel_size",
]

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rounding of ITU-R 601 (ColorJitter semantics)
_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision RandomResizedCrop default aspect-ratio range
_CROP_TRIES = 10
# On CPU a view is made in chunks of about this many floats: the dozens of elementwise passes then run in cache
# instead of memory (measured 1.4-1.7x faster at 32 and 64 px, batch 256). GPUs take the whole batch at once.
_CPU_CHUNK_ELEMENTS = 3 * 2**17


def validate_spec(spec: AugmentSpec) -> None:
    """Raise ConfigError naming the first bad field, so a typo fails before training starts."""

    def bad(name: str, why: str, value: object) -> ConfigError:
        return ConfigError(f"AugmentSpec.{name} {why}, got {value!r}")

    if isinstance(spec.crop_size, bool) or not isinstance(spec.crop_size, int) or spec.crop_size < 8:
        raise bad("crop_size", "must be an integer >= 8", spec.crop_size)
    try:
        lo, hi = (float(v) for v in spec.crop_scale)
    except (TypeError, ValueError):
        raise bad("crop_scale", "must be two numbers (low, high)", spec.crop_scale) from None
    if not (0.0 < lo <= 1.0 and 0.0 < hi <= 1.0):
        raise bad("crop_scale", "values must lie in (0, 1]", spec.crop_scale)
    if lo > hi:
        raise bad("crop_scale", "needs low <= high", spec.crop_scale)
    for name in ("hflip", "jitter_prob", "grayscale", "blur"):
        p = getattr(spec, name)
        if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 <= p <= 1.0:
            raise bad(name, "is a probability and must lie in [0, 1]", p)
    s = spec.jitter_strength
    if isinstance(s, bool) or not isinstance(s, Real) or not math.isfinite(s) or s < 0:
        raise bad("jitter_strength", "must be a finite number >= 0", s)
    for name in ("mean", "std"):
        values = getattr(spec, name)
        ok = isinstance(values, (tuple, list)) and len(values) == 3
        if not ok or not all(isinstance(v, Real) and math.isfinite(v) for v in values):
            raise bad(name, "must be three finite numbers (one per RGB channel)", values)
    if any(v <= 0 for v in spec.std):
        raise bad("std", "must be > 0 for every channel", spec.std)


def to_float_chw(images: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] images, [B, H, W, 3] or [B, 3, H, W] -> float32 [B, 3, H, W] in [0, 1].

    A trailing dimension of 3 means channels-last (how ``ImageSet`` stores images); otherwise dimension 1 must be 3.
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"images: expected a 4-d tensor [B, H, W, 3] or [B, 3, H, W], got {shape}")
    if images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        raise DataError(f"images: expected 3 colour channels first or last, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    if images.is_floating_point():
        return images.to(torch.float32, memory_format=torch.contiguous_format)
    raise DataError(f"images: expected uint8 or floating-point pixels, got {images.dtype}")


def _channel_stats(spec: AugmentSpec, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return mean, std


def normalize_batch(images: Tensor, spec: AugmentSpec) -> Tensor:
    """The un-augmented path (embedding, kNN, probes): to float, resize to ``crop_size`` if needed, normalise."""
    x = to_float_chw(images)
    size = spec.crop_size
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean, std = _channel_stats(spec, x.device)
    return x.sub(mean).div_(std).contiguous()  # out of place: x may be the caller's float tensor


# ------------------------------------------------------------------------------------------------------------
# crop + flip as one resampling pass


def sample_crop_boxes(batch: int, height: int, width: int, scale: tuple[float, float], device: torch.device) -> Tensor:
    """Per-sample crop boxes [B, 4] = (x0, y0, w, h) in pixels, drawn as torchvision's RandomResizedCrop does.

    All ten tries are drawn at once for every sample; the first one that fits wins, otherwise the centre crop
    with the aspect ratio clamped to the allowed range (the whole image for square inputs).
    """
    area = float(height * width)
    u = torch.rand(batch, _CROP_TRIES, 4, device=device)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(_RATIO[0]), math.log(_RATIO[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.sqrt(target * ratio)
    h = torch.sqrt(target / ratio)
    fits = (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first try that fits (0 if none)

    def pick(t: Tensor) -> Tensor:
        return t.gather(1, first).squeeze(1)

    w, h = pick(w), pick(h)
    x0 = pick(u[..., 2]) * (width - w)
    y0 = pick(u[..., 3]) * (height - h)

    in_ratio = width / height
    if in_ratio < _RATIO[0]:
        fw, fh = float(width), width / _RATIO[0]
    elif in_ratio > _RATIO[1]:
        fw, fh = height * _RATIO[1], float(height)
    else:
        fw, fh = float(width), float(height)
    any_fit = fits.any(dim=1)
    boxes = torch.stack([x0, y0, w, h], dim=1)
    fallback = torch.tensor([(width - fw) / 2, (height - fh) / 2, fw, fh], device=device, dtype=boxes.dtype)
    return torch.where(any_fit.unsqueeze(1), boxes, fallback)


def crop_flip_resize(x: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Resample each box of ``x`` [B, 3, H, W] to size x size, mirrored where ``flip`` [B] is true (bilinear).

    With ``align_corners=False`` pixel edges map to -1/+1, so a full-image box at the same size samples exact
    pixel centres: the identity (or the exact mirror), not a half-pixel-shifted blur.
    """
    b, _, height, width = x.shape
    x0, y0, w, h = boxes.unbind(1)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    sign = 1.0 - 2.0 * flip.to(x.dtype)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ------------------------------------------------------------------------------------------------------------
# colour jitter


def _gray(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue of [B, 3, H, W] images in [0, 1] by ``shift`` [B] turns (torchvision's ``adjust_hue`` result).

    A hue rotation keeps each pixel's max and min channel (HSV value and saturation), so only the hue is
    computed, in sixths of a turn: h = (c[k+1] - c[k+2]) / (max - min) + 2k for the max channel k. The shifted
    colour is channel = max - (max - min) * clamp(2 - |t - 2|, 0, 1) with t = (h + 5, 3, 1 for R, G, B) mod 6
    (the usual HSV->RGB formula). Working on single-channel planes avoids the argmax and broadcasting passes
    that make the full RGB->HSV->RGB round trip slow on CPU.
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    inv = 1.0 / chroma.clamp_min(1e-12)  # grey pixels: any hue works, chroma 0 leaves them unchanged
    hue6 = torch.where(r == maxc, (g - b) * inv, torch.where(g == maxc, (b - r) * inv + 2.0, (r - g) * inv + 4.0))
    hue6 = hue6 + (6.0 * shift.view(-1, 1, 1) + 6.0)  # +6 keeps it positive before the remainder
    out = torch.empty_like(x)
    for channel, offset in enumerate((5.0, 3.0, 1.0)):
        t = torch.remainder(hue6 + offset, 6.0)
        ramp = (2.0 - (t - 2.0).abs_()).clamp_(0.0, 1.0)
        torch.sub(maxc, chroma * ramp, out=out[:, channel])
    return out


def jitter_colors(
    x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor, hue: Tensor | None, order: list[int]
) -> Tensor:
    """Apply per-sample factors [B] in ``order`` (0 brightness, 1 contrast, 2 saturation, 3 hue) as torchvision."""
    brightness, contrast, saturation = (f.view(-1, 1, 1, 1) for f in (brightness, contrast, saturation))
    out = x
    for op in order:
        if op == 0:
            out = (out * brightness).clamp_(0.0, 1.0)
        elif op == 1:
            mean = _gray(out).mean(dim=(1, 2, 3), keepdim=True)
            out = torch.lerp(mean, out, contrast).clamp_(0.0, 1.0)
        elif op == 2:
            out = torch.lerp(_gray(out), out, saturation).clamp_(0.0, 1.0)
        elif op == 3 and hue is not None:
            out = adjust_hue(out, hue)
    return out


def color_jitter(x: Tensor, strength: float, prob: float) -> Tensor:
    """SimCLR colour jitter with per-sample factors; samples not drawn (probability 1 - ``prob``) pass unchanged."""
    amount = 0.8 * strength
    hue_max = min(0.2 * strength, 0.5)  # torchvision rejects hue > 0.5: half a turn either way is every hue
    u = torch.rand(x.shape[0], 5, device=x.device, dtype=x.dtype)
    apply = u[:, 0] < prob
    lo = max(0.0, 1.0 - amount)
    brightness, contrast, saturation = (lo + (1.0 + amount - lo) * u[:, i] for i in (1, 2, 3))
    hue = hue_max * (2.0 * u[:, 4] - 1.0) if hue_max > 0 else None
    order = torch.randperm(4).tolist()  # CPU generator: no device sync for four Python ints
    out = jitter_colors(x, brightness, contrast, saturation, hue, order)
    return torch.lerp(x, out, apply.to(x.dtype).view(-1, 1, 1, 1))  # exact x where weight 0, out where 1


# ------------------------------------------------------------------------------------------------------------


def blur_kernel_size(crop_size: int) -> int:
    """Odd kernel side of about 10% of the crop (SimCLR), at least 3."""
    k = max(3, int(round(0.1 * crop_size)))
    return k if k % 2 == 1 else k + 1


class BatchAugment(nn.Module):
    """One SimCLR view per call: uint8/float [B, H, W, 3] or [B, 3, H, W] -> normalised float32 [B, 3, S, S].

    Runs on whatever device the input is on (call ``.to(device)`` so kornia's generators follow); every sample
    draws its own crop, flip, jitter, grayscale and blur. Call it twice on the same batch for two views.
    `fixed_rows`: the input's bottom rows are copied into every view unaugmented (a data set's content-free
    code, e.g. RandBit's bits, which both views must share exactly).
    """

    def __init__(self, spec: AugmentSpec, fixed_rows: int = 0) -> None:
        super().__init__()
        validate_spec(spec)
        self.spec = spec
        self.fixed_rows = int(fixed_rows)
        mean, std = _channel_stats(spec)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        weights = torch.tensor(_GRAY_WEIGHTS)
        self.grayscale = K.RandomGrayscale(rgb_weights=weights, p=spec.grayscale) if spec.grayscale > 0 else None
        self.blur = (
            K.RandomGaussianBlur(blur_kernel_size(spec.crop_size), (0.1, 2.0), p=spec.blur) if spec.blur > 0 else None
        )

    def forward(self, images: Tensor) -> Tensor:
        if images.device.type == "cpu" and images.ndim == 4:
            per_sample = max(images[0].numel(), 3 * self.spec.crop_size**2)
            chunk = max(1, _CPU_CHUNK_ELEMENTS // per_sample)
            if len(images) > chunk:
                return torch.cat([self._view(part) for part in images.split(chunk)])
        return self._view(images)

    def _view(self, images: Tensor) -> Tensor:
        spec = self.spec
        x = to_float_chw(images)
        b, _, height, width = x.shape
        boxes = sample_crop_boxes(b, height, width, spec.crop_scale, x.device)
        flip = torch.rand(b, device=x.device) < spec.hflip
        x = crop_flip_resize(x, boxes, flip, spec.crop_size)
        if spec.jitter_strength > 0 and spec.jitter_prob > 0:
            x = color_jitter(x, spec.jitter_strength, spec.jitter_prob)
        if self.grayscale is not None:
            x = self.grayscale(x)
        if self.blur is not None:
            x = self.blur(x)
        if self.fixed_rows:
            code = to_float_chw(images)[:, :, height - self.fixed_rows:, :]
            if code.shape[-1] != spec.crop_size:
                code = F.interpolate(code, size=(self.fixed_rows, spec.crop_size), mode="nearest")
            x = x.float().clone()
            x[:, :, spec.crop_size - self.fixed_rows:, :] = code
        mean, std = self.mean.to(x.device), self.std.to(x.device)  # no-op once the module is on x's device
        return x.float().sub_(mean).div_(std).contiguous()

    def extra_repr(self) -> str:
        return repr(self.spec)
