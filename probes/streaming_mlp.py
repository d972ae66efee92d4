"""The MLP head trained on minibatches drawn from the store: memory O(window * d), never O(n * d).

Same network, optimiser, schedule and early stopping as ``MLPHead`` (``solvers.train_stacked``); only the
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

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probes import solvers
from probes.blocks import BlockList, FitsArraysAsBlocks, pass_statistics
from probes.heads import MLPHead, resolve_device


class ShuffledBlocks:
    """``solvers.Batches`` over a ``BlockList``: shuffled chunks, read a window at a time (module docstring)."""

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


class StreamingMLPHead(FitsArraysAsBlocks, MLPHead):
    """``MLPHead`` (same parameters and contract) trained from a ``BlockList`` instead of arrays.

    Early stopping needs the val split (streaming holds out no train rows); with
    ``early_stopping=False`` val is optional and training runs all ``epochs``.
    """

    def fit_blocks(self, blocks: BlockList, *, X_val: Any = None, y_val: Any = None) -> StreamingMLPHead:
        self.fit_grid_blocks(blocks, X_val=X_val, y_val=y_val, specs=[self._spec()])
        return self

    def fit_grid_blocks(self, blocks: BlockList, *, X_val: Any = None, y_val: Any = None,
                        specs: list[solvers.MLPSpec]) -> list[dict[str, Any]]:
        """``MLPHead.fit_grid`` on streamed train rows: every spec trains on the same minibatches (one read
        of each window for all heads); the best on val is kept; one table row per spec."""
        if self.early_stopping and (X_val is None or y_val is None):
            raise ValueError("the streaming MLP head stops early on val: pass X_val and y_val "
                             "(or set early_stopping=False)")
        t0 = time.perf_counter()
        device = resolve_device(self.device)
        stats = pass_statistics(blocks, device, gram=False)
        self.classes_, self.n_features_in_ = stats["classes"], stats["d"]
        self._set_scale(stats["mean"].cpu().numpy(), stats["var"].clamp_min(0).sqrt().cpu().numpy())
        val = self._encode_val(X_val, y_val)
        val_t = None if val is None else (self._standardized(val[0]), self._tensor(val[1]))
        options = self._train_options(max(max(s.hidden, default=0) for s in specs))
        mean, scale = (torch.from_numpy(a).to(device) for a in (self.mean_, self.scale_))
        batches = ShuffledBlocks(blocks, classes=self.classes_, mean=mean, scale=scale, seed=self.seed)
        model = solvers.init_stacked(specs, self.n_features_in_, len(self.classes_), seed=self.seed, device=device)
        report = solvers.train_stacked(model, specs, batches, val_t, options)
        table = self._keep_best(model, specs, report, has_val=val is not None)
        self.n_passes_ = 1 + batches.epochs  # the statistics pass + one per epoch
        self.seconds_ = time.perf_counter() - t0
        return table

    def final_params(self) -> dict[str, Any]:
        """Parameters to refit on train+val without a val split: the best epoch count, no early stop."""
        return {**self.get_params(), "epochs": max(1, self.best_epoch_), "early_stopping": False}
