"""``BlockSource``: train rows read block by block (from the store's shards), never all at once."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from probes.linear.eigenbasis import Eigenbasis
from probes.linear.streamed import StreamedDesign
from probes.mlp.batches import ShuffledBlocks
from probes.sources.blocks import BlockList, array_blocks, chain_blocks
from probes.sources.statistics import Statistics, pass_statistics


class BlockSource:
    """A ``TrainSource`` over a ``BlockList``: memory O(d^2 + block * (d + K)) for the logistic
    solver (one read per L-BFGS iteration) and O(window * d) for minibatches."""

    streamed = True

    def __init__(self, blocks: BlockList, n_features: int) -> None:
        self.blocks, self.labels, self.n, self.n_features = blocks, blocks.labels, blocks.n, n_features

    def statistics(self, device: torch.device, *, gram: bool = True) -> Statistics:
        return pass_statistics(self.blocks, device, gram=gram)

    def design(self, basis: Eigenbasis, *, base: float, classes: np.ndarray, counts: Tensor,
               val: tuple[Tensor, Tensor] | None, dtype: torch.dtype, device: torch.device) -> StreamedDesign:
        return StreamedDesign(self.blocks, basis, base=base, classes=classes, counts=counts, val=val,
                              dtype=dtype, device=device)

    def batches(self, *, classes: np.ndarray, mean: Tensor, scale: Tensor, seed: int) -> ShuffledBlocks:
        return ShuffledBlocks(self.blocks, classes=classes, mean=mean, scale=scale, seed=seed)

    def holdout(self, fraction: float, seed: int) -> tuple[BlockSource, np.ndarray, np.ndarray]:
        raise ValueError("streamed train rows hold nothing out: pass X_val and y_val (a val split), "
                         "or fix the hyper-parameters that need one")

    def with_rows(self, X: np.ndarray, y: np.ndarray) -> BlockSource:
        return BlockSource(chain_blocks(self.blocks, array_blocks(X, y)), self.n_features)
