"""Blocked cosine top-k: queries against millions of keys without a [Q, N] similarity matrix in memory."""

from __future__ import annotations

import numpy as np
import torch


def blocked_topk(queries: torch.Tensor, keys: torch.Tensor, k: int, *, query_block: int = 2048,
                 key_block: int = 32768, self_index: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k inner products of each query row with the key rows: (sims [Q, k] descending, indices [Q, k]).

    Memory stays at query_block x key_block floats whatever N: each key block's top-k is merged
    into a running top-k. `self_index[i]` (a key row equal to query i) is excluded: leave-one-out.
    """
    n = keys.shape[0]
    k = min(k, n - (self_index is not None))
    if k < 1:
        raise ValueError("k-NN needs at least one key row besides the query itself")
    out_s, out_i = [], []
    for q0 in range(0, queries.shape[0], query_block):
        q = queries[q0:q0 + query_block]
        best_s = torch.full((len(q), 0), -torch.inf)
        best_i = torch.zeros((len(q), 0), dtype=torch.long)
        for k0 in range(0, n, key_block):
            s = (q @ keys[k0:k0 + key_block].T).float()
            if self_index is not None:
                own = torch.as_tensor(self_index[q0:q0 + len(q)], dtype=torch.long) - k0
                hit = (own >= 0) & (own < s.shape[1])
                s[hit.nonzero().squeeze(1), own[hit]] = -torch.inf
            ts, ti = s.topk(min(k, s.shape[1]), dim=1)
            cat_s, cat_i = torch.cat([best_s, ts], 1), torch.cat([best_i, ti + k0], 1)
            best_s, pos = cat_s.topk(min(k, cat_s.shape[1]), dim=1)
            best_i = cat_i.gather(1, pos)
        out_s.append(best_s)
        out_i.append(best_i)
    return torch.cat(out_s), torch.cat(out_i)
