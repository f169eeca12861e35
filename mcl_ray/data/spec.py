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
    labels: str | None = None  # the labels table of file-listed data sets

    def identity(self) -> dict:
        """What the images depend on (where they are cached and whether to download do not change them)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("download", "cache_dir", "root", "labels")}
        if self.name in ("imagefolder", "labeled"):  # the files are the data
            out["root"] = str(Path(self.root).expanduser().resolve())
        if self.labels:  # the table's contents: its path, size and modification time
            path = Path(self.labels).expanduser().resolve()
            stat = path.stat() if path.exists() else None
            out["labels"] = [str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
        return out
