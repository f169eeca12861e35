"""Stage artifacts on a local path or any pyarrow filesystem URI (s3://, gs://, hdfs://).

An entry is a directory of files plus a `_COMPLETE.json` marker written last. Readers treat an entry
without the marker as absent, so a crash mid-write never leaves a stage that looks finished, on object
stores (no atomic directory rename) as on local disks. Single files are written to a temporary name and
renamed where the filesystem allows it, else written with one PUT (atomic on S3/GCS).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch

from mcl_ray.errors import ConfigError

MARKER = "_COMPLETE.json"


def resolve_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path (relative allowed, ~ expanded) or a URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # unknown scheme, missing credentials, ...
        raise ConfigError(f"storage: cannot open {uri!r}: {exc}") from None


def display_uri(fs: pafs.FileSystem, path: str) -> str:
    return path if isinstance(fs, pafs.LocalFileSystem) else f"{fs.type_name}://{path}"


@dataclass(frozen=True)
class Entry:
    """One directory of artifacts (a trained stage, or one clustering of it)."""

    fs: pafs.FileSystem
    path: str

    @property
    def uri(self) -> str:
        return display_uri(self.fs, self.path)

    def _file(self, name: str) -> str:
        return f"{self.path}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self._file(name)).type == pafs.FileType.File

    def is_complete(self) -> bool:
        return self.exists(MARKER)

    def put_bytes(self, name: str, data: bytes) -> None:
        self.fs.create_dir(self.path, recursive=True)
        target = self._file(name)
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = f"{target}.tmp-{time.monotonic_ns()}"
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, target)
        else:
            with self.fs.open_output_stream(target) as out:
                out.write(data)

    def get_bytes(self, name: str) -> bytes:
        with self.fs.open_input_file(self._file(name)) as src:
            return src.read()

    def put_json(self, name: str, payload: Any) -> None:
        self.put_bytes(name, (json.dumps(payload, indent=2, default=float) + "\n").encode())

    def get_json(self, name: str) -> Any:
        return json.loads(self.get_bytes(name))

    def put_array(self, name: str, array: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self.put_bytes(name, buf.getvalue())

    def get_array(self, name: str) -> np.ndarray:
        return np.load(io.BytesIO(self.get_bytes(name)), allow_pickle=False)

    def put_state(self, name: str, state: dict[str, torch.Tensor]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        self.put_bytes(name, buf.getvalue())

    def get_state(self, name: str) -> dict[str, torch.Tensor]:
        return torch.load(io.BytesIO(self.get_bytes(name)), map_location="cpu", weights_only=True)

    def commit(self, meta: dict[str, Any]) -> None:
        """Mark the entry finished; must be the last write."""
        self.put_json(MARKER, {**meta, "committed_at": time.time()})

    def meta(self) -> dict[str, Any]:
        return self.get_json(MARKER)

    def clear(self) -> None:
        """Delete a partial entry before it is rewritten."""
        if self.fs.get_file_info(self.path).type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)


class ArtifactStore:
    """`<root>/stages/<key>/` (trained stages), `<root>/clusters/<key>/` (clusterings), `<root>/<run>/` (runs)."""

    def __init__(self, root: str):
        self.root_uri = root
        self.fs, self.root = resolve_uri(root)

    def stage(self, key: str) -> Entry:
        return Entry(self.fs, f"{self.root}/stages/{key}")

    def clusters(self, key: str) -> Entry:
        return Entry(self.fs, f"{self.root}/clusters/{key}")

    def run(self, name: str, sub: str = "") -> Entry:
        return Entry(self.fs, f"{self.root}/{name}" + (f"/{sub}" if sub else ""))

    def local_path(self, *parts: str) -> Path | None:
        """The same location as a local Path, when the store is on the local disk."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return Path(self.root, *parts)
        return None

    def uri(self, *parts: str) -> str:
        return display_uri(self.fs, "/".join([self.root, *parts]))


def open_store(root: str) -> ArtifactStore:
    return ArtifactStore(root)
