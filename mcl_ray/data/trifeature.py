"""The Trifeature data set (Hermann & Lampinen 2020), generated procedurally at any resolution.

Every image is one shape x one texture x one colour (10 of each). The design follows the authors'
generation script: a 128 px shape template on a 224 px canvas, rotated by an integer angle in [-45, 45)
degrees and placed uniformly so it fits; a texture with a 10 px period, randomly offset and independently
rotated, multiplies the shape mask; masked pixels take the colour, all others the grey background
(0.5, 0.5, 0.5) -- so the off-texture pixels inside the shape are grey too. The published script has no
scale jitter; `shape_scale` adds it on request and defaults to none.

All geometry is kept in the published 224 px units, so other resolutions show the same picture: the
canvas is sampled at `image_size * supersample` points and box-filtered down (anti-aliasing). At 32 px
a texture period is only 1.4 px, so textures survive mostly as brightness and moire differences -- that
is what the published images look like at that size, and it is deliberately not "fixed" here.

Sampling is done with torch `grid_sample` (bilinear for the shape, nearest for the texture, as the
original's `scipy.ndimage.rotate` orders 1 and 0), in chunks, so 10k images at 32 px take seconds.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mcl_ray.data.base import ImageSet
from mcl_ray.data.cache import read_image_set_npz, write_image_set_npz
from mcl_ray.errors import DataError

GENERATOR_VERSION = 1  # bump whenever the pixels a seed produces change (invalidates caches)

SHAPES = ("triangle", "square", "plus", "circle", "tee", "rhombus", "pentagon", "star", "fivesquare", "trapezoid")
TEXTURES = ("solid", "stripes", "grid", "hexgrid", "dots", "noise", "triangles", "zigzags", "rain", "pluses")
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "pink": (1.0, 0.4, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "purple": (0.3, 0.0, 0.5),
    "ocean": (0.1, 0.4, 0.5),
    "orange": (1.0, 0.6, 0.0),
    "white": (1.0, 1.0, 1.0),
}
BACKGROUND = (0.5, 0.5, 0.5)
ATTRIBUTES = ("shape", "texture", "color")
VALUE_NAMES = {"shape": SHAPES, "texture": TEXTURES, "color": tuple(COLORS)}

CANVAS = 224  # published render size; the unit of all geometry below
TEMPLATE = 128  # published shape template size
MAX_ANGLE = 45  # angles are integers in [-MAX_ANGLE, MAX_ANGLE)
PERIOD = 10  # texture period (published TEXTURE_SCALE)
MAX_SUPERSAMPLE = 4
MAX_SHAPE_SCALE = 1.2  # a 45-degree template must still fit on the canvas (128 * 1.2 * sqrt 2 < 224)

_TEXEL_LO = 64  # rotated canvas touches texels 65..382 of the published 448 px texture sheet
_WINDOW = 320  # texels [64, 384) are all a canvas can reach, whatever the rotation
_RAIN_PROB = 0.05
_RAIN_LENGTH = PERIOD - PERIOD // 3
_RANDOM_TEXTURES = ("noise", "rain")


def generate_trifeature(
    n: int, image_size: int, seed: int, *, shape_scale: tuple[float, float] = (1.0, 1.0),
    labels: np.ndarray | None = None,
) -> ImageSet:
    """`n` balanced, shuffled Trifeature images (uint8, image_size^2 x 3) with shape/texture/color labels.

    The 1000 combinations are cycled, so each appears n//1000 or n//1000+1 times; the cycle is ordered so
    that every attribute on its own stays balanced to +-1 even when n is not a multiple of 1000.
    Identical seeds give identical bytes (on the same machine and library versions). `labels` ([n, 3] shape,
    texture, colour indices) renders chosen combinations instead (the MMVP-format pairs).
    """
    n = _positive_int(n, "n")
    image_size = _positive_int(image_size, "image_size")
    lo, hi = _check_scale(shape_scale)
    rng = np.random.default_rng(_seed(seed))

    if labels is None:
        labels = _balanced_labels(n, rng)
    elif labels.shape != (n, 3) or labels.min() < 0 or labels.max() >= 10:
        raise DataError(f"trifeature labels: expected [n, 3] indices in 0..9, got shape {labels.shape}")
    shape_angle = rng.integers(-MAX_ANGLE, MAX_ANGLE, n)
    scale = rng.uniform(lo, hi, n)
    theta = np.deg2rad(shape_angle)
    extent = np.floor(TEMPLATE * scale * (np.abs(np.cos(theta)) + np.abs(np.sin(theta))) + 0.5)
    corner = np.floor(rng.random((n, 2)) * (CANVAS - extent)[:, None])  # uniform integer offset, as published
    shape_center = corner + (extent[:, None] - 1) / 2
    texture_angle = rng.integers(-MAX_ANGLE, MAX_ANGLE, n)
    texture_offset = rng.integers(0, PERIOD, (n, 2))
    texture_seed = rng.integers(0, 2**63, n)

    supersample = min(MAX_SUPERSAMPLE, max(1, CANVAS // image_size))
    internal = image_size * supersample
    chunk = int(np.clip(2**21 // internal**2, 1, 256))
    # Render sorted by (texture, shape) so each chunk shares a few sheets/templates, then put back in place.
    order = np.argsort(labels[:, 1] * len(SHAPES) + labels[:, 0], kind="stable")
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    with _one_torch_thread():
        for start in range(0, n, chunk):
            idx = order[start : start + chunk]
            images[idx] = _render(
                labels[idx],
                _shape_transform(shape_angle[idx], scale[idx], shape_center[idx]),
                texture_angle[idx],
                texture_offset[idx],
                texture_seed[idx],
                internal,
                supersample,
            )
    attributes = {name: np.asarray(labels[:, i], np.int64).copy() for i, name in enumerate(ATTRIBUTES)}
    return ImageSet(images=images, attributes=attributes, name="trifeature", value_names=VALUE_NAMES)


def load_trifeature(
    n: int,
    image_size: int,
    seed: int,
    cache_dir: str | Path | None = None,
    *,
    shape_scale: tuple[float, float] = (1.0, 1.0),
) -> ImageSet:
    """generate_trifeature, cached under cache_dir (None: no cache).

    The file name holds every input and GENERATOR_VERSION; it is written atomically, and an unreadable
    or mismatched file is regenerated with a warning.
    """
    if cache_dir is None:
        return generate_trifeature(n, image_size, seed, shape_scale=shape_scale)

    lo, hi = _check_scale(shape_scale)
    scale_tag = "" if (lo, hi) == (1.0, 1.0) else f"_scale{lo:g}-{hi:g}"
    path = Path(cache_dir) / f"trifeature_n{n}_px{image_size}_seed{seed}{scale_tag}_v{GENERATOR_VERSION}.npz"
    cached = read_image_set_npz(path, "trifeature")
    if cached is not None and cached.images.shape == (n, image_size, image_size, 3):
        if set(cached.attributes) == set(ATTRIBUTES):
            cached.value_names = VALUE_NAMES
            return cached
    if cached is not None:
        warnings.warn(f"Trifeature cache {path} does not match its key; regenerating it", stacklevel=2)
    images = generate_trifeature(n, image_size, seed, shape_scale=shape_scale)
    write_image_set_npz(path, images)
    return images


def split_seed(seed: int, split: str) -> int:
    """A seed per (seed, split), so train and test never share images while staying reproducible."""
    entropy = [_seed(seed), zlib.crc32(split.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


# --- labels -----------------------------------------------------------------------------------------


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) int64 labels: the 1000-combination cycle tiled to n, label-permuted per seed, then shuffled.

    Cycle position k = a + 10 b + 100 c maps to (a, a + b, a + 3 b + c) mod 10: a bijection whose every
    run of 10 covers each shape, texture and colour once (so prefixes are balanced per attribute).
    """
    k = np.arange(1000)
    a, b, c = k % 10, (k // 10) % 10, k // 100
    cycle = np.stack([a, (a + b) % 10, (a + 3 * b + c) % 10], axis=1)
    relabel = np.stack([rng.permutation(10) for _ in ATTRIBUTES])
    cycle = np.stack([relabel[i][cycle[:, i]] for i in range(3)], axis=1)
    labels = np.resize(cycle, (n, 3))
    return labels[rng.permutation(n)].astype(np.int64)


# --- rendering --------------------------------------------------------------------------------------


def _render(labels, shape_theta, texture_angle, texture_offset, texture_seed, internal, ss) -> np.ndarray:
    """One chunk (sorted by texture, then shape): sample ink = shape x texture, box-filter, colour."""
    count = len(labels)
    points = _canvas_points(internal)
    ink = torch.empty(count, 1, internal // ss, internal // ss)
    for _, run in _runs(labels[:, 1] * len(SHAPES) + labels[:, 0]):
        shape, tex = int(labels[run.start, 0]), int(labels[run.start, 1])
        template = torch.from_numpy(_templates()[shape : shape + 1])
        mask = _sample_batched(template, _grid(points, shape_theta[run], internal), "bilinear")
        if TEXTURES[tex] in _RANDOM_TEXTURES:  # a fresh random sheet per image
            windows = [_random_window(TEXTURES[tex], seed) for seed in texture_seed[run]]
            sheets = torch.from_numpy(np.stack(windows)[:, None])
            shift = np.full((len(windows), 2), -float(_TEXEL_LO))
            grid = _grid(points, _texture_transform(texture_angle[run], shift, _WINDOW), internal)
            texture = F.grid_sample(sheets, grid, mode="nearest", align_corners=False)
        else:  # one shared periodic sheet; the per-image offset is a shift of the sampling grid
            sheet = torch.from_numpy(_periodic_sheets()[tex][None, None])
            shift = texture_offset[run][:, ::-1].astype(np.float64)  # (col, row)
            grid = _grid(points, _texture_transform(texture_angle[run], shift, sheet.shape[-1]), internal)
            texture = _sample_batched(sheet, grid, "nearest")
        ink[run] = F.avg_pool2d(mask.mul_(texture), ss) if ss > 1 else mask.mul_(texture)  # pool before colour

    palette = torch.tensor(list(COLORS.values()), dtype=torch.float32)[torch.from_numpy(labels[:, 2])]
    background = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1)
    rgb = background + ink * (palette.view(count, 3, 1, 1) - background)
    return (rgb * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@contextlib.contextmanager
def _one_torch_thread():
    """The per-call tensors are small, so OpenMP fan-out costs more than it saves (10x slower on a busy
    2-core machine); one thread also keeps the bytes independent of the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _runs(values: np.ndarray) -> list[tuple[int, slice]]:
    """(value, slice) for each run of equal values in a sorted 1-D array."""
    edges = np.flatnonzero(np.diff(values)) + 1
    bounds = np.concatenate([[0], edges, [len(values)]])
    return [(int(values[a]), slice(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]


def _sample_batched(source: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample ONE (1, 1, h, w) source at many images' grids in a single call (no per-image copies)."""
    count, height, width, _ = grid.shape
    out = F.grid_sample(source, grid.reshape(1, count * height, width, 2), mode=mode, align_corners=False)
    return out.view(count, 1, height, width)


@functools.lru_cache(maxsize=8)
def _canvas_points(internal: int) -> torch.Tensor:
    """Centres of the internal sample grid in canvas pixel coordinates (pixel k's centre is k)."""
    centres = (torch.arange(internal, dtype=torch.float64) + 0.5) * CANVAS / internal - 0.5
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([cols.flatten(), rows.flatten(), torch.ones(internal * internal, dtype=torch.float64)], 1)
    return points.to(torch.float32)


def _grid(points: torch.Tensor, theta: np.ndarray, internal: int) -> torch.Tensor:
    """grid_sample grid (count, H, W, 2) from per-image affine maps (count, 2, 3) of canvas points."""
    theta32 = torch.from_numpy(theta.astype(np.float32)).transpose(1, 2)
    return torch.matmul(points, theta32).view(len(theta), internal, internal, 2)


def _rotation(degrees: np.ndarray) -> np.ndarray:
    """(count, 2, 2) rotation matrices acting on (col, row) vectors."""
    t = np.deg2rad(degrees)
    cos, sin = np.cos(t), np.sin(t)
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)


def _to_normalized(linear: np.ndarray, offset: np.ndarray, size: int) -> np.ndarray:
    """Affine map into pixel coordinates of a size^2 input -> grid_sample's [-1, 1] (align_corners=False)."""
    theta = np.concatenate([linear, offset[..., None]], axis=-1) * (2.0 / size)
    theta[..., 2] += 1.0 / size - 1.0
    return theta


def _shape_transform(angle: np.ndarray, scale: np.ndarray, center_rc: np.ndarray) -> np.ndarray:
    """Canvas pixel -> template pixel: rotate back about the shape centre, undo the scale."""
    linear = _rotation(-angle) / scale[:, None, None]
    center = center_rc[:, ::-1]  # (col, row)
    offset = (TEMPLATE - 1) / 2 - np.einsum("kij,kj->ki", linear, center)
    return _to_normalized(linear, offset, TEMPLATE)


def _texture_transform(angle: np.ndarray, shift: np.ndarray, size: int) -> np.ndarray:
    """Canvas pixel -> texel of the published 448 px texture sheet (rotated about its centre) + shift."""
    linear = _rotation(angle)
    canvas_centre = np.full(2, (CANVAS - 1) / 2)
    sheet_centre = CANVAS - 0.5  # centre of the 2 x CANVAS sheet
    offset = sheet_centre + shift - np.einsum("kij,j->ki", linear, canvas_centre)
    return _to_normalized(linear, offset, size)


# --- shapes and textures (the published integer rules, vectorised) -----------------------------------


@functools.lru_cache(maxsize=1)
def _templates() -> np.ndarray:
    """(10, 1, 128, 128) float32 shape templates in SHAPES order."""
    return np.stack([_template(name) for name in SHAPES])[:, None].astype(np.float32)


def _template(name: str) -> np.ndarray:
    size, half, sixth, third = TEMPLATE, TEMPLATE // 2, TEMPLATE // 6, TEMPLATE // 3
    i, j = np.indices((size, size))
    if name == "square":
        return np.ones((size, size), bool)
    if name == "circle":
        return (i + 0.5 - half) ** 2 + (j + 0.5 - half) ** 2 < half**2
    if name == "triangle":
        return np.abs(j - half) - i // 2 < 1
    bar = (j >= half - sixth) & (j < half + sixth + 1)
    if name == "plus":
        return bar | ((i >= half - sixth) & (i < half + sixth + 1))
    if name == "tee":
        return bar | (i < third)
    if name == "rhombus":
        return (0 < j - half + i // 2) & (j - half + i // 2 < half)
    if name == "pentagon":
        mid = int(size * 0.4)
        inset = (i - mid) // 3.1
        return np.where(i < mid, np.abs(j - half) - i * 1.25 < 1, (inset < j) & (j < size - inset))
    if name == "star":
        line, line2, line3 = int(size * 0.4), int(size * 0.4) + int(0.2 * size), int(size * 0.4) + int(0.15 * size)
        tip = (i < line) & (np.abs(j - half) - i // 4 < 1)
        inset = (i - line) * 2.4
        arms = (i >= line) & (i < line2) & (inset < j) & (j < size - inset)
        x1, x2 = size * 0.33 - 0.43 * (i - line3), size * 0.62 - 1.05 * (i - line3)
        legs = (i >= line3) & (((x1 < j) & (j < x2)) | ((x1 < size - j) & (size - j < x2)))
        return tip | arms | legs
    if name == "fivesquare":
        middle_i, middle_j = (i >= third) & (i < 2 * size // 3), (j >= third) & (j < 2 * size // 3)
        return middle_i == middle_j
    if name == "trapezoid":
        inset = i // 3.1
        return (inset < j) & (j < size - inset)
    raise DataError(f"unknown Trifeature shape {name!r}; known: {', '.join(SHAPES)}")


@functools.lru_cache(maxsize=1)
def _periodic_sheets() -> np.ndarray:
    """(10, S, S) float32 sheets of the deterministic textures, big enough for any offset and rotation."""
    size = _TEXEL_LO + _WINDOW + PERIOD
    y, x = np.indices((size, size))
    sheets = np.zeros((len(TEXTURES), size, size), np.float32)
    for t, name in enumerate(TEXTURES):
        if name not in _RANDOM_TEXTURES:
            sheets[t] = _periodic_texture(name, y, x)
    return sheets


def _periodic_texture(name: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The published rule for one texture at texel (y, x) (offsets already added)."""
    thick, thin, half = PERIOD // 3, PERIOD // 5, PERIOD // 2
    py, px = y % PERIOD, x % PERIOD
    if name == "solid":
        return np.ones_like(y, bool)
    if name == "stripes":
        return py < thick
    if name == "grid":
        return (py < thick) | (px < thick)
    if name == "hexgrid":
        slant = np.floor(1.73 * y).astype(np.int64)
        return ((x + slant) % PERIOD < thin) | ((x - slant) % PERIOD < thin) | (py < thin)
    if name == "dots":
        return (px - half) ** 2 + (py - half) ** 2 < (3 * PERIOD // 7) ** 2
    if name == "triangles":
        return py // 2 - np.abs(px - half) > 0
    if name == "zigzags":
        flip = (y // PERIOD) % 2 == 1
        xx = np.where(flip, PERIOD - px - 1, px)
        return (py // 2 < xx) & (xx < PERIOD - half + py // 2)
    if name == "pluses":
        w = 1.5
        flip = (y // PERIOD) % 2 == 1
        upright = (np.abs(px - half) < w) | (np.abs(py - half) < w)
        shifted = (px < w) | (PERIOD - px < w) | ((np.abs(py - half) < w) & (np.abs(px - half) > w))
        return np.where(flip, shifted, upright)
    raise DataError(f"unknown Trifeature texture {name!r}; known: {', '.join(TEXTURES)}")


def _random_window(name: str, seed: int) -> np.ndarray:
    """Texels [64, 384)^2 of a fresh noise / rain sheet (published: p=0.5 pixels; 5% drop starts, 7 long)."""
    rng = np.random.default_rng(seed)
    if name == "noise":
        return (rng.random((_WINDOW, _WINDOW), np.float32) < 0.5).astype(np.float32)
    starts = rng.random((_WINDOW + _RAIN_LENGTH - 1, _WINDOW), np.float32) < _RAIN_PROB
    drops = np.lib.stride_tricks.sliding_window_view(starts, _RAIN_LENGTH, axis=0).any(-1)
    return drops.astype(np.float32)


# --- argument checks -------------------------------------------------------------------------------


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"trifeature: {name} must be a positive integer, got {value!r}")
    return int(value)


def _seed(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError(f"trifeature: seed must be a non-negative integer, got {value!r}")
    return int(value)


def _check_scale(shape_scale: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in shape_scale)
    if not (0 < lo <= hi <= MAX_SHAPE_SCALE) or math.isnan(lo + hi):
        raise DataError(f"trifeature: shape_scale must satisfy 0 < low <= high <= {MAX_SHAPE_SCALE}, got {shape_scale}")
    return lo, hi
