"""Write side of one feature set: lock, adopt finished shards, buffer rows into shards, commit splits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from featstore.errors import StoreError, StoreLockedError
from featstore.store.compact import compact_shards
from featstore.store.keys import STORE_FORMAT, canonical_json
from featstore.store.manifest import (DamagedManifestError, SplitIndex, read_index, read_manifest, remove_own_temps,
                                      write_index, write_manifest)
from featstore.store.parts import read_parts, write_part
from featstore.store.shards import CorruptShardError, read_rows, remove_stale_temps, shard_files, write_shard

DEFAULT_SHARD_ROWS = 4096
DEFAULT_FLUSH_S = 60.0  # a kill loses at most this much work (plus the batch in flight)
QUARANTINE = "quarantine"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def busy_worker_locks(folder: Path) -> list[str]:
    """Worker locks (`.lock-rank-I-of-N`) held right now: those workers are still writing shards."""
    busy = []
    for path in sorted(Path(folder).glob(".lock-rank-*")) if Path(folder).is_dir() else []:
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            busy.append(path.name)
            continue
        lock.release()
    return busy


class FeatureSetWriter:
    """Context manager that owns a feature set folder while extracting into it.

    Completed shards are immutable; rows still buffered when an error stops the run are flushed
    (they are complete vectors), so a rerun only computes what is really missing.

    With publish=False the writer is one worker of several (torchrun rank, --shard I/N): it takes
    only its own lock, writes shards and a part file per split, and never touches manifest.json or
    the index, which the process holding the main `.lock` assembles (merge or a plain extract).
    """

    def __init__(self, folder: Path, *, key: str, key_fields: dict[str, Any], header: dict[str, Any],
                 shard_rows: int = DEFAULT_SHARD_ROWS, flush_s: float = DEFAULT_FLUSH_S, wait: bool = False,
                 lock_name: str = ".lock", publish: bool = True, reported: Iterable[str] = ()) -> None:
        self.folder, self.key, self.key_fields, self.header = Path(folder), key, key_fields, header
        self.key_json = canonical_json(key_fields)
        self.header_json = canonical_json(header)
        self.shard_rows, self.flush_s, self.wait, self.publish = shard_rows, flush_s, wait, publish
        self._lock = FileLock(str(self.folder / lock_name))
        self._buf: dict[str, list[tuple[str, int, str, np.ndarray]]] = {}
        self._since: dict[str, float] = {}  # when the oldest buffered row of a split arrived
        self._stored: dict[str, set[tuple[str, str]]] = {}
        self.manifest: dict[str, Any] = {}
        self._on_disk = ""  # the manifest as read: an unchanged one is not written back on exit
        self._previous: dict[str, SplitIndex] = {}
        self.repairs: list[str] = []  # what opening the set found damaged and fixed (shown to the user)
        self.reported = tuple(reported)  # shard and part names other workers said they wrote (merge trusts these)
        self.written: list[str] = []  # shard and part names this writer published, for whoever merges

    def __enter__(self) -> "FeatureSetWriter":
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=-1 if self.wait else 0)
        except Timeout:
            raise StoreLockedError(
                f"feature set {self.folder} is being written by another process "
                f"(lock {self._lock.lock_file}); wait for it to finish, or rerun with --wait") from None
        try:
            self.manifest = self._load_or_create()
            sole = self.publish and not busy_worker_locks(self.folder)  # no other process can be writing here
            remove_stale_temps(self.folder, sole_writer=sole)  # litter of killed writers
            if self.publish:
                remove_own_temps(self.folder)  # manifest/index temps: only the main lock's holder writes them
            self._adopt_shards()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for split in list(self._buf):
                self.flush(split)
            if self.publish and canonical_json(self.manifest) != self._on_disk:
                self.manifest["updated"] = now_iso()
                write_manifest(self.folder, self.manifest)
        finally:
            self._lock.release()

    def _load_or_create(self) -> dict[str, Any]:
        """The manifest, or a fresh one when it is absent or damaged: everything in it is derived again
        from the shards (adopted next) and the dataset (each split's index, at commit)."""
        if (self.folder / "manifest.json").exists():
            try:
                m = read_manifest(self.folder)
                if m["key"] != self.key:
                    raise DamagedManifestError(f"manifest names feature set {m['key']}, the folder holds {self.key}")
            except DamagedManifestError as e:
                self.repairs.append(f"manifest rebuilt from the shards ({e})")
            else:
                self._on_disk = canonical_json(m)
                m.update(self.header)  # class list, dataset path: the latest scan is the truth
                return m
        return {"format": STORE_FORMAT, "key": self.key, "key_fields": self.key_fields, "splits": {},
                "created": now_iso(), "history": [], **self.header}

    def _adopt_shards(self) -> None:
        """List every finished shard on disk, including those of a run that was killed; a shard that is
        truncated or damaged is moved aside (its rows are then computed again)."""
        for split, names in shard_files(self.folder, also=self.reported).items():
            entry = self.manifest["splits"].setdefault(split, {"shards": [], "count": 0, "failures": []})
            stored = self._stored.setdefault(split, set())
            kept = []
            for name in names:
                try:
                    rows = read_rows(self.folder / name, key_json=self.key_json)
                except CorruptShardError as e:
                    self.repairs.append(f"{quarantine(self.folder, name)}: {e.reason}; its rows are computed again")
                    continue
                stored.update(zip(rows.ids, rows.sha1))
                kept.append(name)
            entry["shards"] = kept

    def previous_index(self, split: str) -> SplitIndex:
        """The last index; a damaged one counts as empty (every image is hashed again, none recomputed)."""
        if split in self._previous:
            return self._previous[split]
        try:
            self._previous[split] = read_index(self.folder, split)
            return self._previous[split]
        except StoreError as e:
            note = f"index of {split} rebuilt from the shards and the dataset ({e})"
            if note not in self.repairs:
                self.repairs.append(note)
            return SplitIndex.empty()

    def known(self, split: str) -> dict[str, list[tuple[str, int, int]]]:
        """id -> every (sha1, size, mtime_ns) recorded for it: the last index, then workers' parts, newest first."""
        out: dict[str, list[tuple[str, int, int]]] = {}
        parts = read_parts(self.folder, split, also=self.reported)
        for index in [self.previous_index(split), *(p.index for p in parts)]:
            for i, h, size, mtime in zip(index.ids, index.sha1, index.size.tolist(), index.mtime_ns.tolist()):
                out.setdefault(i, []).append((h, size, mtime))
        return out

    def part_failures(self, split: str) -> dict[str, str]:
        """id -> why a worker could not embed it (the newest part that tried it wins)."""
        out: dict[str, str] = {}
        for part in read_parts(self.folder, split, also=self.reported):
            for f in part.failures:
                out.setdefault(f["id"], f["reason"])
        return out

    def is_stored(self, split: str, image_id: str, sha1: str) -> bool:
        return (image_id, sha1) in self._stored.get(split, ())

    def stored_hashes(self, split: str, ids: set[str]) -> dict[str, set[str]]:
        """id -> content hashes with a stored vector, for the given ids only."""
        out: dict[str, set[str]] = {}
        for i, h in self._stored.get(split, ()):
            if i in ids:
                out.setdefault(i, set()).add(h)
        return out

    def stored_ids(self, split: str) -> set[str]:
        """Ids with at least one stored vector, whatever its content hash."""
        return {i for i, _ in self._stored.get(split, ())}

    def add(self, split: str, ids: list[str], labels: list[int], sha1: list[str], features: np.ndarray) -> None:
        """Buffer rows; publish them as a shard every `shard_rows` rows or `flush_s` seconds, whichever is first."""
        buf = self._buf.setdefault(split, [])
        self._since.setdefault(split, time.monotonic())
        buf.extend(zip(ids, labels, sha1, features))
        if len(buf) >= self.shard_rows or time.monotonic() - self._since[split] >= self.flush_s:
            self.flush(split)

    def flush(self, split: str) -> None:
        buf = self._buf.pop(split, [])
        self._since.pop(split, None)
        if not buf:
            return
        ids, labels, sha1, feats = zip(*buf)
        path = write_shard(self.folder, split, ids=list(ids), labels=np.asarray(labels), sha1=list(sha1),
                           features=np.stack(feats), key_json=self.key_json, header_json=self.header_json)
        entry = self.manifest["splits"].setdefault(split, {"shards": [], "count": 0, "failures": []})
        entry["shards"].append(path.name)
        self.written.append(path.name)
        self._stored.setdefault(split, set()).update(zip(ids, sha1))

    def commit_split(self, split: str, index: SplitIndex, failures: list[dict[str, str]], *,
                     missing: int = 0) -> bool:
        """Record what the split holds now; every id in the index must have a stored vector.

        `missing`: images a merge found neither stored nor failed (a worker not yet run or killed).
        Returns False when nothing changed since the last commit: then nothing is written.
        """
        if not self.publish:
            raise StoreError("a worker of several cannot commit the manifest; merge does")
        self._check_stored(split, index)
        entry = self.manifest["splits"].setdefault(split, {"shards": [], "count": 0, "failures": []})
        if ("index" in entry and entry.get("failures") == failures and entry.get("missing", 0) == missing
                and self.previous_index(split).same_as(index)):
            self.compact(split)  # a compaction killed before deleting the old shards is finished all the same
            return False
        entry.update(index=write_index(self.folder, split, index), count=len(index), failures=failures)
        entry.pop("missing", None)
        if missing:
            entry["missing"] = missing
        write_manifest(self.folder, self.manifest)
        self._previous[split] = index
        self.compact(split)
        return True

    def compact(self, split: str) -> tuple[int, int]:
        """Rewrite the split's small shards (many short flushes) as few full ones: (shards before, after).

        The new shards are listed before the old are deleted: a kill in between leaves duplicate rows,
        which readers take once and the next compaction folds away."""
        entry = self.manifest["splits"].get(split)
        if not entry or not self.publish:
            return (len(entry["shards"]) if entry else 0,) * 2
        before = list(entry["shards"])
        new, old = compact_shards(self.folder, split, before, target_rows=self.shard_rows, key_json=self.key_json,
                                  header_json=self.header_json)
        if old:
            entry["shards"] = [n for n in before if n not in old] + new
            write_manifest(self.folder, self.manifest)
            for name in old:
                (self.folder / name).unlink(missing_ok=True)
        return len(before), len(entry["shards"])

    def commit_part(self, split: str, index: SplitIndex, failures: list[dict[str, str]], *,
                    rank: int, count: int) -> str:
        """A worker's record of its slice of the split, for whoever merges."""
        self._check_stored(split, index)
        name = write_part(self.folder, split, rank=rank, count=count, index=index, failures=failures)
        self.written.append(name)
        return name

    def _check_stored(self, split: str, index: SplitIndex) -> None:
        self.flush(split)
        stored = self._stored.get(split, set())
        missing = [i for i, h in zip(index.ids, index.sha1) if (i, h) not in stored]
        if missing:
            raise StoreError(f"split {split}: {len(missing)} ids lack a stored vector (e.g. {missing[0]})")

    def record_run(self, info: dict[str, Any]) -> None:
        if self.repairs:
            info = {**info, "repairs": list(self.repairs)}
        self.manifest.setdefault("history", []).append(info)


def quarantine(folder: Path, name: str) -> str:
    """Move a damaged file to `<set>/quarantine/` (kept for inspection, out of every read path); returns where."""
    dest_dir = Path(folder) / QUARANTINE
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / name
    k = 0
    while dest.exists():
        k += 1
        dest = dest_dir / f"{name}.{k}"
    shutil.move(str(Path(folder) / name), dest)
    return f"{QUARANTINE}/{dest.name}"
