"""Train rows as blocks read from the store (or arrays), for the heads that never hold a whole split.

A ``BlockList`` is re-iterable (``blocks()`` is one pass in order) and random access
(``blocks.read(i, lo, hi)``), so the logistic head streams passes and the MLP head draws shuffled
windows from the same source. ``Buffers`` reuse per-block memory; ``pass_statistics`` is the one pass
both heads start with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

Block = tuple[np.ndarray, np.ndarray]  # (features [m, d], labels [m])


class BlockList:
    """Blocks with random access; ``read(i, lo, hi)`` returns rows ``lo:hi`` of block ``i``. ``labels``:
    every row's label (any order), known without reading the features."""

    def __init__(self, sizes: list[int], read: Callable[[int, int, int], Block], labels: np.ndarray) -> None:
        self.sizes, self.read, self.labels = [int(m) for m in sizes], read, labels
        self.n = sum(self.sizes)

    def __call__(self) -> Iterator[Block]:
        for i, m in enumerate(self.sizes):
            if m:
                yield self.read(i, 0, m)


def feature_set_blocks(fs: Any, split: str = "train") -> BlockList:
    """One split of a ``FeatureSet``, one block per shard (fp16 as stored)."""
    from featstore.store.shards import read_features

    # Planning reads every shard's ids (~half the time of a pass on small dims): done once, and the plan
    # (which rows of which shard, O(n) ints) is reused by every pass.
    index, plan = fs.plan(split)
    labels = [index.labels[dst] for _, _, dst in plan]

    def read(i: int, lo: int, hi: int) -> Block:
        path, src, _ = plan[i]
        return read_features(path, src[lo:hi]), labels[i][lo:hi]
    return BlockList([len(src) for _, src, _ in plan], read, index.labels)


def array_blocks(X: np.ndarray, y: np.ndarray, block_rows: int = 4096) -> BlockList:
    """Blocks over arrays already in memory (tests, ``--final``'s val rows)."""
    sizes = [min(block_rows, len(X) - lo) for lo in range(0, len(X), block_rows)]

    def read(i: int, lo: int, hi: int) -> Block:
        start = i * block_rows
        return X[start + lo:start + hi], y[start + lo:start + hi]
    return BlockList(sizes, read, np.asarray(y))


def chain_blocks(*sources: BlockList) -> BlockList:
    """Several sources read in turn (``--final``: the train shards, then val)."""
    owners = [(s, i) for s in sources for i in range(len(s.sizes))]

    def read(i: int, lo: int, hi: int) -> Block:
        source, j = owners[i]
        return source.read(j, lo, hi)
    return BlockList([s.sizes[i] for s, i in owners], read, np.concatenate([s.labels for s in sources]))


class FitsArraysAsBlocks:
    """``fit(X, y)`` for a streaming head: the same streaming code over blocks of in-memory arrays
    (tests, small data), so its sklearn contract holds."""

    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None, block_rows: int = 4096) -> Any:
        from probes.heads import check_features, check_labels

        X = check_features(X)
        y = check_labels(y, len(X))
        return self.fit_blocks(array_blocks(X, y, block_rows), X_val=X_val, y_val=y_val)


class Buffers:
    """Reused per-block buffers: a fresh 10 MB tensor per block costs more in page faults than the
    conversion itself (fp16 -> fp32 into a fresh tensor 1.6 GB/s, into a reused one 19 GB/s)."""

    def __init__(self, d: int, dtype: torch.dtype, device: torch.device) -> None:
        self.d, self.dtype, self.device, self.rows = d, dtype, device, 0

    def load(self, xb: np.ndarray, shift: Tensor) -> Tensor:
        """``xb - shift`` in float32 on the device, as a view of a reused buffer."""
        m = len(xb)
        if m > self.rows:
            self.rows = m
            self.f32 = torch.empty(m, self.d, device=self.device)
            self.low = self.f32 if self.dtype == torch.float32 else torch.empty(m, self.d, dtype=self.dtype,
                                                                                  device=self.device)
        x = self.f32[:m]
        x.copy_(torch.from_numpy(np.ascontiguousarray(xb)))
        return x.sub_(shift)

    def low_precision(self, x: Tensor) -> Tensor:
        """The same rows in the matmul dtype (a second reused buffer when that is not float32)."""
        return x if self.dtype == torch.float32 else self.low[:len(x)].copy_(x)


def pass_statistics(blocks: BlockList, device: torch.device, *, gram: bool = True) -> dict[str, Any]:
    """One pass of exact statistics: n, mean, the covariance (``gram``) or the variances, the class
    sums and counts (float64 sums of float32 blocks shifted by the first block's mean, so nothing
    cancels). ``classes`` are the sorted labels seen; fewer than two is an error (no classifier)."""
    n, shift, s1, s2, buffers = 0, None, None, None, None
    csum: dict[Any, Tensor] = {}
    cnt: dict[Any, int] = {}
    for xb, yb in blocks():
        if shift is None:
            d = xb.shape[1]
            shift = torch.from_numpy(np.asarray(xb, dtype=np.float32).mean(0)).to(device)
            buffers = Buffers(d, torch.float32, device)
            s1 = torch.zeros(d, dtype=torch.float64, device=device)
            s2 = torch.zeros((d, d) if gram else (d,), dtype=torch.float64, device=device)
        elif xb.shape[1] != shift.numel():
            raise ValueError(f"blocks have different widths: {shift.numel()} and {xb.shape[1]}")
        xc = buffers.load(xb, shift)
        if not torch.isfinite(xc).all():
            raise ValueError("train features contain NaN or infinity")
        n += len(xc)
        s1 += xc.sum(0, dtype=torch.float64)
        s2 += xc.T @ xc if gram else (xc * xc).sum(0, dtype=torch.float64)
        uniq, inv = np.unique(np.asarray(yb), return_inverse=True)
        sums = torch.zeros(len(uniq), xc.shape[1], device=device).index_add_(
            0, torch.from_numpy(inv.astype(np.int64)).to(device), xc).double()
        bins = np.bincount(inv, minlength=len(uniq))
        for j, label in enumerate(uniq.tolist()):
            csum[label] = csum[label] + sums[j] if label in csum else sums[j]
            cnt[label] = cnt.get(label, 0) + int(bins[j])
    if n == 0:
        raise ValueError("the train blocks are empty")
    classes = sorted(csum)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least 2")
    m = s1 / n
    second = s2 / n - (torch.outer(m, m) if gram else m * m)
    return {"n": n, "d": shift.numel(), "classes": np.array(classes), "shift": shift.double(),
            "mean": shift.double() + m, ("cov" if gram else "var"): second,
            "class_sums": torch.stack([csum[c] for c in classes]),
            "counts": torch.tensor([cnt[c] for c in classes], dtype=torch.float64, device=device)}
