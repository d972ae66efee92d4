"""The rows an audit looks at: every stored image of the chosen splits, in one stream order, read shard by shard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featstore.store import FeatureSet
from featstore.store.shards import read_features


@dataclass(frozen=True)
class AuditRows:
    """Row r of the stream is image ``ids[r]`` of split ``splits[r]``; ``blocks()`` yields its vectors in that
    order, one shard at a time, as often as asked (nothing stays in memory between passes)."""

    splits: np.ndarray  # object str
    ids: np.ndarray  # object str
    labels: np.ndarray  # int64, -1 unlabeled
    sha1: np.ndarray  # object str
    dim: int
    plan: tuple[tuple[Path, np.ndarray], ...]  # (shard, rows of it) in stream order

    def __len__(self) -> int:
        return len(self.ids)

    def blocks(self) -> Iterator[np.ndarray]:
        for path, src in self.plan:
            yield read_features(path, src)

    def keys(self) -> np.ndarray:
        """'split/id' per row: how the exclude file and the tables name an image."""
        return np.array([f"{s}/{i}" for s, i in zip(self.splits, self.ids)], dtype=object)


def store_rows(fs: FeatureSet, splits: list[str] | None = None) -> AuditRows:
    """Every current image of ``splits`` (default: all) in shard order, through the store's read plan."""
    cols: dict[str, list[np.ndarray]] = {"splits": [], "ids": [], "labels": [], "sha1": []}
    plan = []
    for split in splits or fs.splits:
        index, parts = fs.plan(split)
        for path, src, dst in parts:
            plan.append((path, src))
            cols["splits"].append(np.full(len(dst), split, dtype=object))
            cols["ids"].append(index.ids[dst])
            cols["labels"].append(index.labels[dst])
            cols["sha1"].append(index.sha1[dst])
    joined = {k: np.concatenate(v) if v else np.zeros(0, dtype=object) for k, v in cols.items()}
    return AuditRows(dim=fs.dim, plan=tuple(plan), **joined)


def array_rows(features: np.ndarray, *, ids: np.ndarray, labels: np.ndarray, splits: np.ndarray,
               sha1: np.ndarray | None = None, block_rows: int = 4096) -> "ArrayRows":
    """The same view over arrays already in memory (a fit that loaded its features)."""
    sha = sha1 if sha1 is not None else np.array([""] * len(ids), dtype=object)
    return ArrayRows(splits=np.asarray(splits, dtype=object), ids=np.asarray(ids, dtype=object),
                     labels=np.asarray(labels, dtype=np.int64), sha1=np.asarray(sha, dtype=object),
                     dim=int(features.shape[-1]), plan=(), features=features, block_rows=block_rows)


@dataclass(frozen=True)
class ArrayRows(AuditRows):
    features: np.ndarray = None  # type: ignore[assignment]
    block_rows: int = 4096

    def blocks(self) -> Iterator[np.ndarray]:
        for lo in range(0, len(self.features), self.block_rows):
            yield self.features[lo:lo + self.block_rows]
