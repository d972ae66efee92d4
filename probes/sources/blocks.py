"""Train rows as blocks read from the store (or arrays), for the heads that never hold a whole split.

A ``BlockList`` is re-iterable (``blocks()`` is one pass in order) and random access
(``blocks.read(i, lo, hi)``), so the logistic head streams passes and the MLP head draws shuffled
windows from the same source. ``Buffers`` reuse per-block memory.
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
        rows = torch.from_numpy(np.ascontiguousarray(xb))
        if self.device.type != "cpu":  # fp16 rows cross the bus (half the bytes) and are widened on the device:
            rows = rows.to(self.device)  # (copy_ from the CPU would convert them there first)
        x.copy_(rows)
        return x.sub_(shift)

    def low_precision(self, x: Tensor) -> Tensor:
        """The same rows in the matmul dtype (a second reused buffer when that is not float32)."""
        return x if self.dtype == torch.float32 else self.low[:len(x)].copy_(x)
