"""``ArraySource``: train rows held in memory as one float32 array."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from probes.linear.design import Whitened
from probes.linear.eigenbasis import Eigenbasis, whiten
from probes.mlp.batches import TensorBatches
from probes.sources.blocks import array_blocks
from probes.sources.statistics import Statistics, pass_statistics


class ArraySource:
    """A ``TrainSource`` over arrays: statistics in blocks (no centred copy), the whitened design
    and the minibatches as whole tensors on the device (the fast path while they fit)."""

    streamed = False

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.labels = X, np.asarray(y)
        self.n, self.n_features = X.shape

    def statistics(self, device: torch.device, *, gram: bool = True) -> Statistics:
        return pass_statistics(array_blocks(self.X, self.labels, 8192), device, gram=gram)

    def _tensor(self, classes: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
        codes = np.searchsorted(classes, self.labels).astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.X)).to(device), torch.from_numpy(codes).to(device)

    def design(self, basis: Eigenbasis, *, base: float, classes: np.ndarray, counts: Tensor,
               val: tuple[Tensor, Tensor] | None, dtype: torch.dtype, device: torch.device) -> Whitened:
        X, y = self._tensor(classes, device)
        z_val = None if val is None else whiten(basis, val[0], base, dtype=dtype)
        return Whitened(basis, base, whiten(basis, X, base, dtype=dtype), y, z_val, None if val is None else val[1])

    def batches(self, *, classes: np.ndarray, mean: Tensor, scale: Tensor, seed: int) -> TensorBatches:
        X, y = self._tensor(classes, mean.device)
        return TensorBatches((X - mean) * scale, y)

    def holdout(self, fraction: float, seed: int) -> tuple[ArraySource, np.ndarray, np.ndarray]:
        train, held = stratified_holdout(self.labels, fraction, seed)
        return ArraySource(self.X[train], self.labels[train]), self.X[held], self.labels[held]

    def with_rows(self, X: np.ndarray, y: np.ndarray) -> ArraySource:
        return ArraySource(np.concatenate([self.X, X]), np.concatenate([self.labels, y]))


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): ``fraction`` of every class that has at least 2 samples."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        k = int(round(fraction * len(idx))) if len(idx) >= 2 else 0
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    train_idx, held_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
    if len(held_idx) == 0:
        raise ValueError("no class has 2 samples: cannot hold out a validation split; "
                         "pass X_val and y_val, or fix the hyper-parameters")
    return train_idx, held_idx
