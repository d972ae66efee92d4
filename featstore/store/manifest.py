"""manifest.json and the per-split index files: what a feature set holds right now."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featstore.errors import StoreError
from featstore.store.files import h5_bytes, replace_atomically
from featstore.store.keys import MANIFEST, STORE_FORMAT, index_name

_STR = h5py.string_dtype("utf-8")
_REQUIRED = ("key", "key_fields", "splits", "encoder", "dim", "classes")
# Temps of the manifest and the indexes: written only by the holder of the main lock.
_OWN_TEMPS = (".manifest.json.*.tmp", ".index-*.tmp")


class DamagedManifestError(StoreError):
    """manifest.json is not what a featstore wrote (invalid JSON, keys missing): it is derivable, so rebuilt."""


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"no manifest in {folder}: not a feature set (or never completed a run)") from None
    except OSError as e:
        raise StoreError(f"unreadable manifest {path}: {e.strerror or e}") from e
    except ValueError as e:  # invalid JSON, invalid UTF-8
        raise DamagedManifestError(f"damaged manifest {path}: {e}") from e
    if not isinstance(m, dict):
        raise DamagedManifestError(f"damaged manifest {path}: not a JSON object")
    if m.get("format") != STORE_FORMAT:
        if isinstance(m.get("format"), int) and m["format"] > STORE_FORMAT:
            raise StoreError(f"{path}: store format {m.get('format')!r}, this featstore reads {STORE_FORMAT}")
        raise DamagedManifestError(f"damaged manifest {path}: format {m.get('format')!r}")
    lacking = [k for k in _REQUIRED if k not in m]
    if lacking or not isinstance(m.get("splits"), dict):
        raise DamagedManifestError(f"damaged manifest {path}: missing {', '.join(lacking) or 'splits'}")
    return m


def strings(ds: h5py.Dataset) -> np.ndarray:
    """A string dataset (utf-8 vlen or fixed ascii) as an object array of str."""
    return ds.asstr()[:].astype(object)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Atomic replace: readers see the old or the new manifest, never half of one."""
    replace_atomically(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def remove_own_temps(folder: Path) -> None:
    """Manifest and index temps left by a killed writer; call only while holding the main lock."""
    for pattern in _OWN_TEMPS:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


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

    def same_as(self, other: "SplitIndex") -> bool:
        """Every column equal: a rerun that found nothing new need not rewrite the index."""
        return all(np.array_equal(getattr(self, c), getattr(other, c))
                   for c in ("ids", "sha1", "labels", "size", "mtime_ns"))

    @classmethod
    def empty(cls) -> "SplitIndex":
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(0, dtype=object), np.zeros(0, dtype=object), z, z, z)


def write_index(folder: Path, split: str, index: SplitIndex) -> str:
    name = index_name(split)
    replace_atomically(folder / name, h5_bytes(lambda f: write_index_datasets(f, index)))
    return name


def write_index_datasets(f: h5py.Group, index: SplitIndex) -> None:
    """The index as datasets of an open file (also used by the per-worker part files)."""
    f.create_dataset("ids", data=np.asarray(index.ids, dtype=object), dtype=_STR)
    check = {"fletcher32": True, "chunks": (len(index),)} if len(index) else {}  # HDF5 checks them on every read
    f.create_dataset("sha1", data=np.asarray(index.sha1, dtype="S40"), **check)
    for k in ("labels", "size", "mtime_ns"):
        f.create_dataset(k, data=np.asarray(getattr(index, k), dtype=np.int64), **check)


def read_index_datasets(f: h5py.Group) -> SplitIndex:
    return SplitIndex(
        ids=strings(f["ids"]), sha1=strings(f["sha1"]),
        labels=f["labels"][:], size=f["size"][:], mtime_ns=f["mtime_ns"][:],
    )


def read_index(folder: Path, split: str, *, required: bool = False) -> SplitIndex:
    """A split's index; absent is empty for a writer (nothing recorded yet) and an error for a reader
    (`required`): the manifest says the split was completed, so an empty split would be a lie."""
    path = folder / index_name(split)
    if not path.exists():
        if required:
            raise StoreError(f"index {path} is missing; run `featstore verify --repair` or rerun featstore extract "
                             "to rebuild it")
        return SplitIndex.empty()
    try:
        with h5py.File(path, "r") as f:
            index = read_index_datasets(f)
    except (OSError, KeyError, ValueError) as e:
        raise StoreError(f"damaged index {path} ({e}); run `featstore verify --repair` or rerun featstore "
                         "extract to rebuild it") from e
    if not (len(index.ids) == len(index.sha1) == len(index.labels) == len(index.size) == len(index.mtime_ns)):
        raise StoreError(f"damaged index {path} (columns of different lengths); run `featstore verify --repair`")
    return index
