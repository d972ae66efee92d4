"""Duplicate clusters: images joined by a shared content hash or a cosine over the threshold; leaks first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SPLIT_RANK = {"train": 0, "val": 1, "valid": 1, "test": 2}


@dataclass(frozen=True)
class Cluster:
    """Rows (stream positions) that are copies of one another; ``exact`` when they all share one content hash."""

    rows: np.ndarray
    splits: tuple[str, ...]  # distinct splits it spans, train first
    exact: bool
    min_cos: float  # lowest cosine of a pair that joined it (1.0 for byte-identical files)

    @property
    def leak(self) -> bool:
        return len(self.splits) > 1


def hash_pairs(sha1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) chaining the rows of each content hash (byte-identical files); empty hashes join nothing."""
    order = np.argsort(sha1, kind="stable")
    s = sha1[order]
    same = (s[1:] == s[:-1]) & (s[1:] != "")
    return order[:-1][same], order[1:][same]


def build_clusters(n: int, splits: np.ndarray, sha1: np.ndarray, i: np.ndarray, j: np.ndarray,
                   cos: np.ndarray) -> list[Cluster]:
    """Connected components of hash and cosine pairs, biggest problem first: leaks, then by size."""
    hi, hj = hash_pairs(sha1)
    a, b = np.concatenate([hi, i]), np.concatenate([hj, j])
    if not len(a):
        return []
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    w = np.concatenate([np.ones(len(hi), np.float32), cos])
    low = np.ones(n, np.float32)
    np.minimum.at(low, a, w)
    members = _groups(comp, np.unique(np.concatenate([a, b])))
    out = []
    for rows in members:
        sp = tuple(sorted(set(splits[rows]), key=lambda s: (SPLIT_RANK.get(s, 3), s)))
        out.append(Cluster(rows=rows, splits=sp, exact=len(set(sha1[rows])) == 1 and sha1[rows[0]] != "",
                           min_cos=float(low[rows].min())))
    return sorted(out, key=lambda c: (not c.leak, -len(c.rows), int(c.rows[0])))


def _groups(comp: np.ndarray, touched: np.ndarray) -> list[np.ndarray]:
    labels = comp[touched]
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return [touched[g] for g in np.split(order, cuts)]


def rows_to_drop(clusters: list[Cluster], splits: np.ndarray) -> np.ndarray:
    """One copy of each cluster is kept: the one in the most held-out split (a train copy of a test image
    goes, never the test image), the first by id among equals. Test images are never dropped."""
    drop = []
    for c in clusters:
        rank = np.array([SPLIT_RANK.get(s, 3) for s in splits[c.rows]])
        keep = c.rows[int(np.argmax(rank))]
        drop += [r for r in c.rows if r != keep and SPLIT_RANK.get(splits[r], 3) < 2]
    return np.array(sorted(drop), dtype=np.int64)
