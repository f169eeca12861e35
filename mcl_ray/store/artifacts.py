"""Stage artifacts on a local path or any pyarrow filesystem URI (s3://, gs://, hdfs://).

An entry is a directory of files plus a `_COMPLETE.json` marker written last. Readers treat an entry
without the marker as absent, so a crash mid-write never leaves a stage that looks finished, on object
stores (no atomic directory rename) as on local disks. Single files are written to a temporary name and
renamed where the filesystem allows it, else written with one PUT (atomic on S3/GCS).

Nothing read back is trusted blindly: the marker lists every file with its size and SHA-256. An entry whose
marker is unreadable, lacks that list, or disagrees with the files present (one missing, one truncated) is
"not finished" -- it is rebuilt, with a warning naming the entry and the reason. Every read checks the file
against its checksum and raises an ArtifactError naming the entry and the file on a mismatch; load errors
(a file that is not an array or a tensor file) name them too. Tensor files load with weights_only=True.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch

from mcl_ray.errors import ArtifactError, ConfigError

MARKER = "_COMPLETE.json"
log = logging.getLogger("mcl_ray")


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
        """Finished and intact as far as sizes go; a damaged entry is reported (warning) and counts as unfinished."""
        problem = self.problem()
        if problem and problem != "absent":
            log.warning("%s: %s; treating it as not finished (it will be rebuilt)", self.uri, problem)
        return problem is None

    def problem(self, *, deep: bool = False) -> str | None:
        """Why the entry is not a finished, intact one (None when it is; 'absent' without a marker). deep=True
        also compares every file's SHA-256 with the marker (reads all files)."""
        if not self.exists(MARKER):
            return "absent"
        try:
            marker = json.loads(self._read(MARKER))
            if "files" not in marker and "committed_at" in marker:
                return None  # written before markers listed their files (mcl-ray 0.1): trusted as before, unverified
            files = marker["files"]
            assert isinstance(files, dict) and all({"bytes", "sha256"} <= set(v) for v in files.values())
        except Exception:
            return f"its {MARKER} is unreadable or lists no files"
        present = {info.base_name: info.size for info in self._listing()}
        for name, expected in files.items():
            if name not in present:
                return f"{name} listed in {MARKER} is missing"
            if present[name] != expected["bytes"]:
                return f"{name} has {present[name]} bytes, {MARKER} says {expected['bytes']}"
            if deep and hashlib.sha256(self._read(name)).hexdigest() != expected["sha256"]:
                return f"{name} does not match its checksum in {MARKER}"
        return None

    def _listing(self) -> list:
        if self.fs.get_file_info(self.path).type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path))
        return [i for i in infos if i.type == pafs.FileType.File and i.base_name != MARKER and ".tmp-" not in i.base_name]

    def _read(self, name: str) -> bytes:
        with self.fs.open_input_file(self._file(name)) as src:
            return src.read()

    def put_bytes(self, name: str, data: bytes) -> None:
        target = self._file(name)
        try:
            self.fs.create_dir(self.path, recursive=True)
            if isinstance(self.fs, pafs.LocalFileSystem):
                tmp = f"{target}.tmp-{time.monotonic_ns()}"
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.move(tmp, target)
            else:
                with self.fs.open_output_stream(target) as out:
                    out.write(data)
        except OSError as exc:  # a file where a folder should be, no permission, a full disk
            raise ArtifactError(f"cannot write {display_uri(self.fs, target)}: {exc} (output_dir / ray.storage must be "
                                "a folder this process can write, with free space)") from None

    def get_bytes(self, name: str) -> bytes:
        """The file's bytes, checked against the checksum its committed marker records."""
        try:
            data = self._read(name)
        except (OSError, FileNotFoundError) as exc:
            raise ArtifactError(f"{self.uri}: cannot read {name}: {exc}") from None
        if name != MARKER and self.exists(MARKER):
            try:
                expected = json.loads(self._read(MARKER))["files"].get(name)
            except Exception:
                expected = None  # an unreadable marker: is_complete() already calls the entry unfinished
            if expected is not None and hashlib.sha256(data).hexdigest() != expected.get("sha256"):
                raise ArtifactError(f"{self.uri}/{name} does not match the checksum recorded in {MARKER} (damaged or "
                                    f"changed after it was written); delete {self.uri} to rebuild it")
        return data

    def put_json(self, name: str, payload: Any) -> None:
        self.put_bytes(name, (json.dumps(payload, indent=2, default=float) + "\n").encode())

    def get_json(self, name: str) -> Any:
        try:
            return json.loads(self.get_bytes(name))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{self.uri}/{name} is not valid JSON: {exc}") from None

    def put_array(self, name: str, array: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self.put_bytes(name, buf.getvalue())

    def get_array(self, name: str) -> np.ndarray:
        try:
            return np.load(io.BytesIO(self.get_bytes(name)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ArtifactError(f"{self.uri}/{name} is not a readable .npy array: {exc}") from None

    def put_state(self, name: str, state: dict[str, torch.Tensor]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        self.put_bytes(name, buf.getvalue())

    def get_state(self, name: str) -> dict[str, torch.Tensor]:
        return load_tensors(io.BytesIO(self.get_bytes(name)), f"{self.uri}/{name}")

    def uncommit(self) -> None:
        """Remove the marker before rewriting a committed entry's files, so a crash in between never leaves a
        marker that disagrees with them."""
        if self.exists(MARKER):
            self.fs.delete_file(self._file(MARKER))

    def commit(self, meta: dict[str, Any]) -> None:
        """Mark the entry finished, listing every file's size and SHA-256 (as stored); must be the last write."""
        files = {}
        for info in sorted(self._listing(), key=lambda i: i.base_name):
            files[info.base_name] = {"bytes": info.size, "sha256": hashlib.sha256(self._read(info.base_name)).hexdigest()}
        self.put_json(MARKER, {**meta, "files": files, "committed_at": time.time()})

    def meta(self) -> dict[str, Any]:
        return self.get_json(MARKER)

    def clear(self) -> None:
        """Delete a partial entry before it is rewritten."""
        if self.fs.get_file_info(self.path).type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)


def load_tensors(source, where: str) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, so a file planted in the storage
    cannot run code when it is loaded. Any failure is an ArtifactError naming `where`."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:  # a pickled object: loading it could run code
            raise ArtifactError(f"{where}: refused to load: it holds a pickled object ({found.group(1)}), not only "
                                "tensors and plain values (weights_only=True)") from None
        raise ArtifactError(f"{where}: not a readable tensor file (weights_only=True)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ArtifactError(f"{where}: not a readable tensor file: {exc}") from None


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
