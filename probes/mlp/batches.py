"""Where training minibatches come from: tensors in memory, or shuffled windows of store blocks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from probes.sources.blocks import BlockList


class Batches(Protocol):
    """Where training minibatches come from: ``TensorBatches`` (in memory) or
    ``ShuffledBlocks`` (read from the store in shuffled windows)."""

    n: int  # rows per epoch

    def epoch(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]: ...


class TensorBatches:
    """Shuffled minibatches of standardised features already on the device."""

    def __init__(self, X: Tensor, y: Tensor) -> None:
        self.X, self.y, self.n = X, y, len(X)

    def epoch(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(self.n, generator=gen, device=self.X.device)
        for start in range(0, self.n, batch_size):
            idx = order[start:start + batch_size]
            yield self.X[idx], self.y[idx]


class ShuffledBlocks:
    """``Batches`` over a ``BlockList``: shuffled chunks, read a window at a time.

    Minibatches drawn from the store: memory O(window * d), never O(n * d).

    Same network, optimiser, schedule and early stopping as ``MLPHead`` (``mlp.trainer.train_stacked``); only the
    minibatches come from ``ShuffledBlocks`` instead of a tensor of the whole split:

    * one statistics pass gives the standardisation (mean, variance; float64 sums) and the classes;
    * every epoch cuts the blocks into chunks of ``chunk_rows`` consecutive rows, shuffles the chunks of the
      whole split, and reads them ``window_chunks`` at a time into a window (fp16 -> float32, standardised
      on the device) whose rows are shuffled again into minibatches. Stores are written in id order, so a
      shard is often a single class: a window draws its chunks from all over the split, where shuffling
      whole shards would give single-class minibatches. Rows left over at a window's end open the next.
      What matters is the number of chunks per window (measured, 200k rows stored in class order, 100
      classes, 5 epochs: in memory 79.96% / 79.28% (seeds 0 / 1); 256-row chunks, 128 per window 77.84% /
      78.10%; 256 x 512: 79.24%; 64 x 512: 79.16%), so the default is 512 chunks of 64 rows: 32k rows,
      ~100 MB at dim 768. Keeping shard files open across chunk reads was tried: +880 MB peak RSS and
      slower (HDF5's per-file caches), so every chunk read opens its shard.
    """

    def __init__(self, blocks: BlockList, *, classes: np.ndarray, mean: Tensor, scale: Tensor, seed: int,
                 chunk_rows: int = 64, window_chunks: int = 512) -> None:
        self.blocks, self.classes, self.mean, self.scale = blocks, classes, mean, scale
        self.n, self.seed, self.epochs = blocks.n, seed, 0
        self.chunks = [(i, lo, min(lo + chunk_rows, m)) for i, m in enumerate(blocks.sizes)
                       for lo in range(0, m, chunk_rows)]
        self.window_chunks = window_chunks

    def epoch(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        self.epochs += 1
        rng = np.random.default_rng([self.seed, self.epochs])
        order = rng.permutation(len(self.chunks))
        carry: tuple[Tensor, Tensor] | None = None
        for w in range(0, len(order), self.window_chunks):
            x, y = self._window([self.chunks[k] for k in order[w:w + self.window_chunks]])
            if carry is not None:
                x, y = torch.cat([carry[0], x]), torch.cat([carry[1], y])
            perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
            last = w + self.window_chunks >= len(order)
            full = len(x) if last else len(x) // batch_size * batch_size
            for start in range(0, full, batch_size):
                idx = perm[start:min(start + batch_size, full)]
                yield x[idx], y[idx]
            carry = None if last else (x[perm[full:]], y[perm[full:]])

    def _window(self, chunks: list[tuple[int, int, int]]) -> tuple[Tensor, Tensor]:
        parts = [self.blocks.read(i, lo, hi) for i, lo, hi in chunks]
        x = torch.from_numpy(np.concatenate([p[0] for p in parts])).to(self.mean.device).float()
        codes = np.searchsorted(self.classes, np.concatenate([np.asarray(p[1]) for p in parts]))
        return x.sub_(self.mean).mul_(self.scale), torch.from_numpy(codes.astype(np.int64)).to(self.mean.device)
