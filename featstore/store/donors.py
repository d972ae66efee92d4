"""Vectors another feature set already holds for the same image content: copied or moved dataset folders are not re-embedded.

Two sets are donors to each other when every key field but the dataset is equal (encoder, weights,
precision, views, output, view): the same bytes through the same model give the same vector, and
the stored sha1 says the bytes are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featstore.errors import StoreError
from featstore.store.catalog import list_feature_sets
from featstore.store.keys import canonical_json
from featstore.store.shards import read_features


def _content_fields(fields: dict[str, Any]) -> str:
    """The key fields but the dataset, as canonical JSON (the writer holds tuples, a manifest lists)."""
    return canonical_json({k: v for k, v in fields.items() if k != "dataset"})


class Donors:
    """sha1 -> vector over the sets that share ``fields`` except the dataset (the set at ``exclude`` aside)."""

    def __init__(self, cache: Path, fields: dict[str, Any], *, exclude: Path) -> None:
        want = _content_fields(fields)
        self.sets = [s for s in list_feature_sets(cache) if s.folder.resolve() != Path(exclude).resolve()
                     and _content_fields(s.manifest.get("key_fields", {})) == want]
        self._where: dict[str, tuple[Path, int]] | None = None

    def __bool__(self) -> bool:
        return bool(self.sets)

    def _index(self) -> dict[str, tuple[Path, int]]:
        """sha1 -> (shard, row) over every split of every donor, built once (reads indexes and shard ids, no vectors)."""
        if self._where is None:
            self._where = {}
            for fs in self.sets:
                for split in fs.splits:
                    try:
                        index, plan = fs.plan(split)
                    except (StoreError, OSError):
                        continue  # an incomplete or damaged donor gives nothing; the image is computed
                    for path, src, dst in plan:
                        for r, k in zip(src.tolist(), dst.tolist()):
                            self._where.setdefault(str(index.sha1[k]), (path, r))
        return self._where

    def take(self, sha1: list[str]) -> tuple[list[int], np.ndarray | None]:
        """Positions in ``sha1`` that a donor holds, and their vectors in that order (float16)."""
        where = self._index()
        hits = [k for k, h in enumerate(sha1) if h in where]
        if not hits:
            return [], None
        rows: list[np.ndarray | None] = [None] * len(hits)
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for j, k in enumerate(hits):
            path, r = where[sha1[k]]
            by_shard.setdefault(path, []).append((r, j))
        for path, pairs in by_shard.items():
            pairs.sort()
            vecs = read_features(path, np.array([r for r, _ in pairs]))
            for (_, j), v in zip(pairs, vecs):
                rows[j] = v
        return hits, np.stack(rows).astype(np.float16)
