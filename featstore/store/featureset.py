"""Read side of one feature set: aligned (ids, labels, vectors) per split, whole or in blocks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featstore.errors import StoreError
from featstore.store.keys import canonical_json
from featstore.store.manifest import SplitIndex, read_index, read_manifest
from featstore.store.shards import read_features, read_rows


@dataclass(frozen=True)
class SplitData:
    """One split's rows in id order: ids[i] has label labels[i] and vector features[i]."""

    ids: np.ndarray  # object array of str, sorted
    labels: np.ndarray  # int64, -1 when unlabeled
    features: np.ndarray  # [N, D] (or [N, V, D] with several views)

    def __len__(self) -> int:
        return len(self.ids)


class FeatureSet:
    """A feature set on disk, described by its manifest; vectors are read on demand."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.manifest = manifest

    @classmethod
    def open(cls, folder: Path) -> "FeatureSet":
        return cls(Path(folder), read_manifest(Path(folder)))

    key = property(lambda self: self.manifest["key"])
    encoder = property(lambda self: self.manifest["encoder"])
    dim = property(lambda self: int(self.manifest["dim"]))
    classes = property(lambda self: list(self.manifest["classes"]))
    dataset = property(lambda self: self.manifest.get("dataset", {}))

    @property
    def splits(self) -> list[str]:
        """Splits that completed at least one run (have an index)."""
        order = {"train": 0, "val": 1, "test": 2}
        done = [s for s, v in self.manifest["splits"].items() if v.get("index")]
        return sorted(done, key=lambda s: (order.get(s, 3), s))

    def count(self, split: str) -> int:
        return int(self.manifest["splits"].get(split, {}).get("count", 0))

    def missing(self, split: str) -> int:
        """Images the last merge found neither stored nor failed (workers not run yet, or killed)."""
        return int(self.manifest["splits"].get(split, {}).get("missing", 0))

    def failures(self, split: str | None = None) -> list[dict[str, str]]:
        splits = [split] if split else list(self.manifest["splits"])
        return [dict(f, split=s) for s in splits for f in self.manifest["splits"].get(s, {}).get("failures", [])]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    def index(self, split: str) -> SplitIndex:
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise StoreError(f"feature set {self.encoder}/{self.key} has no split {split!r} (has: {have})")
        return read_index(self.folder, split, required=True)

    def plan(self, split: str) -> tuple[SplitIndex, list[tuple[Path, np.ndarray, np.ndarray]]]:
        """For each shard: which of its rows are current (``src``), and where they go in id order
        (``dst``). Readers that pass over a split many times (streaming heads) plan it once."""
        index = self.index(split)
        pos = {(i, h): k for k, (i, h) in enumerate(zip(index.ids, index.sha1))}
        filled = np.zeros(len(index), dtype=bool)
        key_json = canonical_json(self.manifest["key_fields"])
        plan = []
        for name in self.manifest["splits"][split]["shards"]:
            path = self.folder / name
            rows = read_rows(path, key_json=key_json)
            src, dst = [], []
            for r, (i, h) in enumerate(zip(rows.ids, rows.sha1)):
                k = pos.get((i, h))
                if k is not None and not filled[k]:  # a duplicate row (rerun overlap) is read once
                    filled[k] = True
                    src.append(r)
                    dst.append(k)
            if src:
                plan.append((path, np.asarray(src), np.asarray(dst)))
        if not filled.all():
            missing = index.ids[~filled]
            raise StoreError(f"{self.encoder}/{self.key} split {split}: {len(missing)} images have no stored "
                             f"vector (e.g. {missing[0]}); rerun featstore extract to complete it")
        return index, plan

    def load(self, split: str, *, dtype: Any = np.float32) -> SplitData:
        """The whole split in memory, rows in id order."""
        index, plan = self.plan(split)
        out = np.empty((len(index), *self._row_shape()), dtype=dtype)
        for path, src, dst in plan:
            out[dst] = read_features(path, src)
        return SplitData(ids=index.ids, labels=index.labels, features=out)

    def _row_shape(self) -> tuple[int, ...]:
        views = int(self.manifest.get("views", 1))
        return (self.dim,) if views == 1 else (views, self.dim)
