"""manifest.json and the per-split index files: what a feature set holds right now."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featstore.errors import StoreError
from featstore.store.keys import MANIFEST, STORE_FORMAT, index_name

_STR = h5py.string_dtype("utf-8")


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"no manifest in {folder}: not a feature set (or never completed a run)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise StoreError(f"unreadable manifest {path}: {e}") from e
    if m.get("format") != STORE_FORMAT:
        raise StoreError(f"{path}: store format {m.get('format')!r}, this featstore reads {STORE_FORMAT}")
    return m


def strings(ds: h5py.Dataset) -> np.ndarray:
    """A string dataset (utf-8 vlen or fixed ascii) as an object array of str."""
    return ds.asstr()[:].astype(object)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Atomic replace: readers see the old or the new manifest, never half of one."""
    _atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class SplitIndex:
    """The images a split holds now: id, content hash, label, and the stat used to skip re-hashing."""

    ids: np.ndarray  # object str, sorted
    sha1: np.ndarray  # object str
    labels: np.ndarray  # int64
    size: np.ndarray  # int64 bytes
    mtime_ns: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> "SplitIndex":
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(0, dtype=object), np.zeros(0, dtype=object), z, z, z)


def write_index(folder: Path, split: str, index: SplitIndex) -> str:
    name = index_name(split)
    tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    with h5py.File(tmp, "w") as f:
        write_index_datasets(f, index)
    os.replace(tmp, folder / name)
    return name


def write_index_datasets(f: h5py.Group, index: SplitIndex) -> None:
    """The index as datasets of an open file (also used by the per-worker part files)."""
    f.create_dataset("ids", data=np.asarray(index.ids, dtype=object), dtype=_STR)
    f.create_dataset("sha1", data=np.asarray(index.sha1, dtype="S40"))
    for k in ("labels", "size", "mtime_ns"):
        f.create_dataset(k, data=np.asarray(getattr(index, k), dtype=np.int64))


def read_index_datasets(f: h5py.Group) -> SplitIndex:
    return SplitIndex(
        ids=strings(f["ids"]), sha1=strings(f["sha1"]),
        labels=f["labels"][:], size=f["size"][:], mtime_ns=f["mtime_ns"][:],
    )


def read_index(folder: Path, split: str) -> SplitIndex:
    path = folder / index_name(split)
    if not path.exists():
        return SplitIndex.empty()
    try:
        with h5py.File(path, "r") as f:
            return read_index_datasets(f)
    except (OSError, KeyError) as e:
        raise StoreError(f"unreadable index {path}: {e}") from e
