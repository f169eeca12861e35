"""Which images an experiment uses (plain values; no torch, so the config layer builds it for free)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataSpec:
    name: str
    root: str
    image_size: int
    train_size: int | None = None  # trifeature: images generated; others: a seeded subsample
    test_size: int | None = None
    pretrain_split: str = "train"
    seed: int = 0
    download: bool = False
    cache_dir: str | None = None

    def identity(self) -> dict:
        """What the images depend on (where they are cached and whether to download do not change them)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("download", "cache_dir", "root")}
        if self.name == "imagefolder":  # the folder is the data
            out["root"] = str(Path(self.root).expanduser().resolve())
        return out
