"""Fold many small shards (time-bounded flushes, reruns) into few full ones, so reads stay fast."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from featstore.store.shards import read_features, read_rows, write_shard


def shard_rows_count(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f.attrs["rows"])


def compact_shards(folder: Path, split: str, names: list[str], *, target_rows: int, key_json: str,
                   header_json: str) -> tuple[list[str], list[str]]:
    """Rewrite the shards under `target_rows` rows, when there are at least two, as full shards.

    Returns (new shard names, names now superseded); the caller lists the new ones, then deletes the old.
    Every distinct (id, sha1) row is kept (a worker's part may still point at any of them); only exact
    duplicates are dropped. Full shards are never touched: completed data stays immutable."""
    small = [n for n in names if shard_rows_count(folder / n) < target_rows]
    if len(small) < 2:
        return [], []
    new: list[str] = []
    seen: set[tuple[str, str]] = set()
    buf: list[tuple[str, int, str, np.ndarray]] = []

    def flush(rows: list[tuple[str, int, str, np.ndarray]]) -> None:
        ids, labels, sha1, feats = zip(*rows)
        path = write_shard(folder, split, ids=list(ids), labels=np.asarray(labels), sha1=list(sha1),
                           features=np.stack(feats), key_json=key_json, header_json=header_json)
        new.append(path.name)

    for name in small:
        rows = read_rows(folder / name, key_json=key_json)
        feats = read_features(folder / name, slice(None))
        for r, (i, lab, h) in enumerate(zip(rows.ids, rows.labels.tolist(), rows.sha1)):
            if (i, h) not in seen:
                seen.add((i, h))
                buf.append((i, lab, h, feats[r]))
        while len(buf) >= target_rows:
            flush(buf[:target_rows])
            buf = buf[target_rows:]
    if buf:
        flush(buf)
    return new, small


def compact_set(folder: Path, *, shard_rows: int) -> list[tuple[str, int, int]]:
    """Compact every split of a feature set under its lock: [(split, shards before, after)]."""
    from featstore.store.manifest import read_manifest
    from featstore.store.writer import FeatureSetWriter

    m = read_manifest(Path(folder))
    header = {k: v for k, v in m.items() if k not in ("format", "key", "key_fields", "splits", "created", "history",
                                                      "updated")}
    with FeatureSetWriter(folder, key=m["key"], key_fields=m["key_fields"], header=header,
                          shard_rows=shard_rows) as writer:
        return [(split, *writer.compact(split)) for split in list(writer.manifest["splits"])]
