"""``TrainSource``: what a head needs of its train rows, whether they sit in memory or in the store."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from probes.linear.design import Design
from probes.linear.eigenbasis import Eigenbasis
from probes.mlp.batches import Batches
from probes.sources.statistics import Statistics


@runtime_checkable
class TrainSource(Protocol):
    """Train rows for a head, reached the way their size allows.

    Heads are written against this protocol only, so a head written once fits from arrays
    (``ArraySource``) and from the store's shards (``BlockSource``) alike:

    * ``labels``: every row's label (known without reading features; gives ``classes_``);
    * ``statistics``: one pass of exact statistics (mean, covariance or variances, class sums);
    * ``design``: the logistic solver's view of the rows in a whitened basis;
    * ``batches``: shuffled standardised minibatches for gradient training;
    * ``holdout``: a stratified part held out for selection (in memory only);
    * ``with_rows``: the same rows followed by more (``--final`` refits on train + val).
    """

    n: int
    n_features: int
    labels: np.ndarray
    streamed: bool

    def statistics(self, device: torch.device, *, gram: bool = True) -> Statistics: ...

    def design(self, basis: Eigenbasis, *, base: float, classes: np.ndarray, counts: Tensor,
               val: tuple[Tensor, Tensor] | None, dtype: torch.dtype, device: torch.device) -> Design: ...

    def batches(self, *, classes: np.ndarray, mean: Tensor, scale: Tensor, seed: int) -> Batches: ...

    def holdout(self, fraction: float, seed: int) -> tuple[TrainSource, np.ndarray, np.ndarray]: ...

    def with_rows(self, X: np.ndarray, y: np.ndarray) -> TrainSource: ...
