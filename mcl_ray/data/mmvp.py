"""MMVP-VLM benchmarks (Tong et al. 2024): the official layout, and an offline one generated from Trifeature.

Layout: `Questions.csv` (header, then rows `qid, type, statement`; rows 2i-1 and 2i are one pair) and one image
per statement at `<images>/<type>/<qid>.jpg`, where <images> is `MLLM_VLM Images` (what the official scoring
script reads) or `MMVP_VLM Images` (what its README shows): both are accepted, and `.png` besides `.jpg`.
The Trifeature benchmark pairs images that differ in exactly one attribute; the pair's type is that attribute,
its statements are the two images' canonical captions, so the same evaluator measures per-attribute suppression.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcl_ray.errors import DataError

IMAGE_FOLDERS = ("MLLM_VLM Images", "MMVP_VLM Images")
PROMPT = "a photo of "  # the official protocol's text: "a photo of " + statement


@dataclass
class MMVPSet:
    """2P images and statements (pair p is rows 2p and 2p+1, statement i describes image i) and P categories."""

    images: np.ndarray
    statements: list[str]
    categories: list[str]
    name: str = "mmvp"

    def __post_init__(self) -> None:
        if len(self.images) != len(self.statements) or len(self.statements) != 2 * len(self.categories):
            raise DataError(f"{self.name}: {len(self.images)} images, {len(self.statements)} statements and "
                            f"{len(self.categories)} pairs do not match (two images and statements per pair)")

    @property
    def prompts(self) -> list[str]:
        return [PROMPT + s for s in self.statements]


def load_mmvp(directory: str | Path, image_size: int) -> MMVPSet:
    """Read an MMVP-format directory; every problem names the file (and row) at fault."""
    from mcl_ray.data.readers import _decode

    root = Path(directory).expanduser()
    questions = root / "Questions.csv"
    if not questions.is_file():
        raise DataError(f"eval.mmvp: {questions} does not exist (expected the MMVP_VLM folder: Questions.csv and "
                        f"'{IMAGE_FOLDERS[0]}/')")
    folder = next((root / f for f in IMAGE_FOLDERS if (root / f).is_dir()), None)
    if folder is None:
        raise DataError(f"eval.mmvp: {root} has no image folder ({' or '.join(repr(f) for f in IMAGE_FOLDERS)})")
    with questions.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh)][1:]
    if not rows or len(rows) % 2:
        raise DataError(f"eval.mmvp: {questions} must list pairs of statements (an even number of rows), got {len(rows)}")
    statements, categories, paths = [], [], []
    for i, row in enumerate(rows):
        if len(row) < 3:
            raise DataError(f"eval.mmvp: {questions} row {i + 2}: expected qid, type, statement; got {row}")
        qid, kind, text = row[0].strip(), row[1].strip(), row[2].strip()
        if not qid.isdigit() or int(qid) != i + 1:
            raise DataError(f"eval.mmvp: {questions} row {i + 2}: question id {qid!r}, expected {i + 1} (ids number the "
                            "rows; rows 2i-1 and 2i are one pair)")
        if i % 2 == 0:
            categories.append(kind)
        elif kind != categories[-1]:
            raise DataError(f"eval.mmvp: {questions} row {i + 2}: a pair spans two types ({categories[-1]!r}, {kind!r})")
        image = next((folder / kind / f"{qid}{ext}" for ext in (".jpg", ".png", ".jpeg")
                      if (folder / kind / f"{qid}{ext}").is_file()), None)
        if image is None:
            raise DataError(f"eval.mmvp: no image for question {qid}: expected {folder / kind / (qid + '.jpg')}")
        statements.append(text)
        paths.append(str(image))
    images = np.stack([_decode(p, image_size, "eval.mmvp") for p in paths])
    return MMVPSet(images=images, statements=statements, categories=categories, name=str(root))


def write_mmvp(directory: str | Path, benchmark: MMVPSet) -> Path:
    """Write `benchmark` in the MMVP layout (PNG images: lossless, so small textures survive)."""
    from PIL import Image

    root = Path(directory).expanduser()
    folder = root / IMAGE_FOLDERS[0]
    for i, image in enumerate(benchmark.images):
        kind = benchmark.categories[i // 2]
        (folder / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / kind / f"{i + 1}.png")
    tmp = root / "Questions.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Question ID", "Type", "Statement"])
        for i, text in enumerate(benchmark.statements):
            writer.writerow([i + 1, benchmark.categories[i // 2], text])
    tmp.replace(root / "Questions.csv")  # last: a directory with Questions.csv is complete
    return root


def trifeature_mmvp(pairs_per_attribute: int, image_size: int, seed: int) -> MMVPSet:
    """Pairs of Trifeature images that differ in exactly one attribute (and in pose), grouped by that attribute."""
    from mcl_ray.data.captions import statement
    from mcl_ray.data.trifeature import ATTRIBUTES, VALUE_NAMES, generate_trifeature

    if pairs_per_attribute < 1:
        raise DataError(f"eval.mmvp_pairs: must be >= 1, got {pairs_per_attribute}")
    rng = np.random.default_rng(seed)
    labels, categories = [], []
    for column, attribute in enumerate(ATTRIBUTES):
        for _ in range(pairs_per_attribute):
            first = rng.integers(0, 10, 3)
            second = first.copy()
            second[column] = (first[column] + rng.integers(1, 10)) % 10  # any other value of this attribute
            labels += [first, second]
            categories.append(attribute)
    labels = np.stack(labels)
    images = generate_trifeature(len(labels), image_size, seed, labels=labels).images
    statements = [statement({a: VALUE_NAMES[a][int(row[c])] for c, a in enumerate(ATTRIBUTES)}) for row in labels]
    return MMVPSet(images=images, statements=statements, categories=categories, name="trifeature-mmvp")
