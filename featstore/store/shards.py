"""One shard file: vectors with their ids, labels and content hashes; written whole or not at all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
import hashlib
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from featstore.errors import StoreError
from featstore.store.files import h5_bytes, write_new
from featstore.store.keys import SHARD_RE, shard_name
from featstore.store.manifest import strings

_STR = h5py.string_dtype("utf-8")
_CHUNK_ROWS = 512  # 256-1024-row uncompressed chunks write at disk speed (MEASURED.md)
# Temp shards: `.tmp@<host>@<pid>@<random>@<split>.h5` ('@' is in no host name; SHARD_RE never matches).
_TMP_RE = re.compile(r"^\.tmp@(?P<host>[^@]+)@(?P<pid>\d+)@[0-9a-f]{8}@.+\.h5$")
# A live writer touches its temp file continuously until it links it; older than this and owned by a
# process that is gone, it is litter (containers sharing a host name do not share PIDs: the age guards them).
STALE_TEMP_S = 60.0


@dataclass(frozen=True)
class ShardRows:
    """The per-row metadata of a shard, without the vectors."""

    ids: np.ndarray  # object array of str
    labels: np.ndarray  # int64
    sha1: np.ndarray  # object array of str


def write_shard(folder: Path, split: str, *, ids: list[str], labels: np.ndarray, sha1: list[str],
                features: np.ndarray, key_json: str, header_json: str = "") -> Path:
    """Write to a temp name, fsync, then link to the next free `<split>-NNNNN.h5`: never clobbers.

    Every dataset carries a checksum that HDF5 checks on each read (fletcher32 per chunk; the utf-8 ids,
    which that filter cannot cover, get a sha1 in the attrs). `header_json` (encoder, dim, classes, dataset)
    lets a lost manifest be rebuilt from the shards alone."""
    n = len(ids)
    if not (len(labels) == len(sha1) == features.shape[0] == n) or n == 0:
        raise StoreError(f"shard for {split}: inconsistent or empty rows ({n} ids, {features.shape[0]} vectors)")
    tmp = folder / f".tmp@{socket.gethostname()}@{os.getpid()}@{uuid.uuid4().hex[:8]}@{split}.h5"

    def fill(f: h5py.File) -> None:
        f.create_dataset("features", data=features.astype(np.float16, copy=False),
                         chunks=(min(n, _CHUNK_ROWS), *features.shape[1:]), fletcher32=True)
        f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=_STR)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64), chunks=(n,), fletcher32=True)
        f.create_dataset("sha1", data=np.asarray(sha1, dtype="S40"), chunks=(n,), fletcher32=True)
        f.attrs.update({"key": key_json, "split": split, "rows": n, "complete": True,
                        "ids_sha1": ids_digest(ids), "header": header_json})

    try:
        write_new(tmp, h5_bytes(fill))
        return _publish(tmp, folder, split)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(folder: Path, *, min_age_s: float = STALE_TEMP_S, sole_writer: bool = False) -> list[Path]:
    """Delete temp shards of writers that were killed on this host (SIGKILL, OOM: their ``finally`` never
    ran). Temps of live processes, of other hosts and younger than ``min_age_s`` are left alone, unless
    the caller is the `sole_writer` (it holds the set's lock and no worker lock is held): then every temp is litter."""
    host, now, removed = socket.gethostname(), time.time(), []
    for path in folder.glob(".tmp@*.h5"):
        m = _TMP_RE.match(path.name)
        if sole_writer and m:
            path.unlink(missing_ok=True)
            removed.append(path)
            continue
        if not m or m["host"] != host or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):  # another cleaner got there first
            if now - path.stat().st_mtime >= min_age_s:
                path.unlink()
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def _publish(tmp: Path, folder: Path, split: str) -> Path:
    num = next_shard_number(folder, split)
    while True:
        final = folder / shard_name(split, num)
        try:
            os.link(tmp, final)  # atomic and fails if the name is taken: concurrent writers never collide
            _fsync_dir(folder)
            return final
        except FileExistsError:
            num += 1


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def next_shard_number(folder: Path, split: str) -> int:
    nums = [int(m["num"]) for p in folder.iterdir() if (m := SHARD_RE.match(p.name)) and m["split"] == split]
    return max(nums, default=-1) + 1


def shard_files(folder: Path, *, also: Iterable[str] = ()) -> dict[str, list[str]]:
    """Complete shard files on disk, per split (temp files never match the pattern).

    `also`: names other processes reported writing. Each is checked by name, not found by listing:
    a shared filesystem's directory listing can lag behind files another node just renamed into place.
    """
    out: dict[str, list[str]] = {}
    names = {p.name for p in folder.iterdir()} | {n for n in also if (folder / n).is_file()}
    for name in sorted(names):
        if m := SHARD_RE.match(name):
            out.setdefault(m["split"], []).append(name)
    return out


def ids_digest(ids: list[str] | np.ndarray) -> str:
    return hashlib.sha1("\0".join(ids).encode("utf-8", "surrogateescape")).hexdigest()


def read_rows(path: Path, *, key_json: str | None = None) -> ShardRows:
    """ids/labels/sha1 of a shard, checking it is complete, intact and belongs to this feature set."""
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False):
                raise CorruptShardError(path, "incomplete (not marked complete)")
            if key_json is not None and f.attrs.get("key") != key_json:
                raise StoreError(f"shard {path} belongs to another feature set (key mismatch)")
            rows = ShardRows(ids=strings(f["ids"]), labels=f["labels"][:], sha1=strings(f["sha1"]))
            if not (len(rows.ids) == len(rows.sha1) == f["features"].shape[0] == int(f.attrs["rows"])):
                raise CorruptShardError(path, "inconsistent row counts (damaged)")
            digest = f.attrs.get("ids_sha1")
            if digest is not None and digest != ids_digest(rows.ids):
                raise CorruptShardError(path, "ids fail their checksum")
            return rows
    except (OSError, KeyError, ValueError) as e:
        raise CorruptShardError(path, _why(e)) from e


def read_features(path: Path, rows: np.ndarray | slice) -> np.ndarray:
    """Vectors of the given rows (sorted indices or a slice) of one shard; a checksum failure names the shard."""
    try:
        with h5py.File(path, "r") as f:
            ds = f["features"]
            if isinstance(rows, slice):
                return ds[rows]
            if len(rows) == ds.shape[0]:
                return ds[:]
            # h5py fancy indexing is slow for many rows; read the covering block and select in memory
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            return ds[lo:hi][rows - lo]
    except (OSError, KeyError) as e:
        raise CorruptShardError(path, _why(e)) from e


def check_shard(path: Path, *, key_json: str | None = None) -> tuple[ShardRows, int]:
    """Read every byte of a shard through its checksums (what `featstore verify` does per shard): its rows and dim."""
    rows = read_rows(path, key_json=key_json)
    try:
        with h5py.File(path, "r") as f:
            ds = f["features"]
            for lo in range(0, ds.shape[0], 8 * _CHUNK_ROWS):
                ds[lo:lo + 8 * _CHUNK_ROWS]
            dim = int(ds.shape[-1])
            if not ds.fletcher32:
                raise CorruptShardError(path, "written without checksums (older featstore): cannot be verified", fatal=False)
    except (OSError, KeyError) as e:
        raise CorruptShardError(path, _why(e)) from e
    return rows, dim


def _why(e: Exception) -> str:
    text = str(e)
    if "filter returned failure" in text or "fletcher32" in text.lower() or "checksum" in text.lower():
        return "fails its checksum (the bytes changed on disk)"
    if "truncated" in text or "eof" in text.lower():
        return f"truncated or damaged ({text})"
    return f"unreadable ({text})"


class CorruptShardError(StoreError):
    """A shard whose bytes cannot be trusted; `featstore verify --repair` moves it aside and the next extract recomputes it."""

    def __init__(self, path: Path, reason: str, *, fatal: bool = True) -> None:
        self.path, self.reason, self.fatal = Path(path), reason, fatal
        super().__init__(f"shard {path}: {reason}; run `featstore verify --repair` (it quarantines the shard; the next extract recomputes its rows)")
