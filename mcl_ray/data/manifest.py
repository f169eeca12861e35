"""What file-based data is, for stage keys: a digest of its files, not of the folder's name.

A stage key that hashed the folder path reused stages trained on old images after a user replaced them (and
missed reuse after a mere move). The manifest digest covers every file a run reads -- its path relative to
data.root, size and modification time, per split -- plus the labels table's contents, so replaced images make
new keys and a moved folder keeps its keys. Listing and stat'ing costs about a second per 100k files; nothing
is decoded. Torch-free: it runs wherever keys are computed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger("mcl_ray")


def data_manifest(name: str, root: str, splits: tuple[str, ...], seed: int, labels: str | None, **options) -> dict | None:
    """{'digest', 'files'} of the files `name` reads for `splits` under `root` (DataSource.files); None for data
    that is not read from the user's files (generated or downloaded sets)."""
    from mcl_ray.data.registry import DATA_SOURCES

    source = DATA_SOURCES.get(name)()
    base = Path(root).expanduser()
    extra = {k: v for k, v in options.items() if v is not None and k in source.options}
    listed = {split: source.files(split, root=base, seed=seed, labels=labels, **extra) for split in splits}
    if all(paths is None for paths in listed.values()):
        return None
    digest = hashlib.sha256()
    count = 0
    for split, paths in listed.items():
        for path in sorted(paths or []):
            try:
                stat = os.stat(path)
            except OSError:
                continue  # a listed file that is missing: loading the data reports it, naming the file
            rel = os.path.relpath(path, base)
            digest.update(f"{split}\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            count += 1
    if labels:
        table = Path(labels).expanduser()
        digest.update(hashlib.sha256(table.read_bytes()).digest() if table.is_file() else b"missing table")
    out = {"digest": digest.hexdigest()[:24], "files": count}
    log.debug("data %s under %s: keys use the manifest of %d files, digest %s", name, base, count, out["digest"])
    return out
