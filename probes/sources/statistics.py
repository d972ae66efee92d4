"""The one pass every head starts with: exact train statistics (n, mean, covariance, class sums)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probes.sources.blocks import BlockList, Buffers


@dataclass(frozen=True)
class Statistics:
    """``second``: the covariance [d, d] (``gram``) or the variances [d]; ``xty``: per-class sums of
    the centred rows [K, d] (float64); ``counts`` [K] float64; ``classes`` the sorted labels."""

    n: int
    d: int
    classes: np.ndarray
    mean: Tensor
    second: Tensor
    xty: Tensor
    counts: Tensor


def pass_statistics(blocks: BlockList, device: torch.device, *, gram: bool = True) -> Statistics:
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
    counts = torch.tensor([cnt[c] for c in classes], dtype=torch.float64, device=device)
    # class sums of rows centred on the true mean: the blocks were shifted by the first block's mean
    xty = torch.stack([csum[c] for c in classes]) - counts[:, None] * m[None, :]
    return Statistics(n=n, d=shift.numel(), classes=np.array(classes), mean=shift.double() + m,
                      second=second, xty=xty, counts=counts)
