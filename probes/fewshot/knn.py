"""Cosine k-NN with DINOv2's temperature-weighted vote; k and temperature chosen on val or by leave-one-out."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from probes.fewshot._common import FewShotHead, check_grid, check_xy, l2rows
from probes.fewshot.topk import blocked_topk


def vote(sims: torch.Tensor, labels: torch.Tensor, n_classes: int, *, k: int, temperature: float | None) -> torch.Tensor:
    """Class probabilities from the k most similar rows: softmax(sim / T) weights (DINOv2), or 1/k when T is None."""
    s, lab = sims[:, :k], labels[:, :k]
    w = torch.full_like(s, 1.0 / s.shape[1]) if temperature is None else torch.softmax(s / temperature, dim=1)
    return torch.zeros(len(s), n_classes).scatter_add_(1, lab, w)


class KNNHead(FewShotHead):
    """Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision" (2023), k-NN evaluation
    (their `eval/knn.py`, after Wu et al. 2018, Eq. 2): p(c|x) = sum over the k nearest train rows j of
    class c of softmax_j(cos(x, x_j) / T). DINOv2 fixes T = 0.07 and reports k in 10/20/100/200; here
    both are selected (a grid), on `val` when given to `fit`, else by leave-one-out over the train rows.

    Parameters
    ----------
    k : int or sequence of int, default (10, 20, 100, 200) (each >= 1; clipped to the train size)
    temperature : float or sequence, default (0.02, 0.05, 0.07, 0.1, 0.2) (> 0)
    weighting : {"softmax", "uniform"}, default "softmax"; "uniform" is the plain majority vote
        (scikit-learn's KNeighborsClassifier(weights="uniform", metric="cosine")), temperature unused.
    loo_queries : int, default 5000 (>= 1); leave-one-out uses at most this many train rows as queries.
    dtype : {"float32", "bfloat16"}, default "float32"; bfloat16 halves the memory of 1M keys.
    seed : int, default 0; which train rows leave-one-out samples.

    With fewer than 2 train rows in some class, leave-one-out cannot see that class: the rule then
    is k = the smallest grid value, T = 0.07 (DINOv2's). `selection_` says which was used.
    Fitted: `classes_`, `keys_` [N, D] unit rows, `key_labels_`, `k_`, `temperature_`, `selection_`.
    """

    def __init__(self, *, k: int | Sequence[int] = (10, 20, 100, 200),
                 temperature: float | Sequence[float] = (0.02, 0.05, 0.07, 0.1, 0.2), weighting: str = "softmax",
                 loo_queries: int = 5000, dtype: str = "float32", seed: int = 0) -> None:
        self.k = k
        self.temperature = temperature
        self.weighting = weighting
        self.loo_queries = loo_queries
        self.dtype = dtype
        self.seed = seed

    def _validate_params_(self) -> None:
        check_grid("k", self.k, low=1.0)
        check_grid("temperature", self.temperature, low=0.0, open_low=True)
        if self.weighting not in ("softmax", "uniform"):
            raise ValueError(f"weighting must be 'softmax' or 'uniform'; got {self.weighting!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16'; got {self.dtype!r}")
        if self.loo_queries < 1:
            raise ValueError(f"loo_queries must be >= 1; got {self.loo_queries}")

    def fit(self, X: Any, y: Any, *, text: Any = None, val: tuple[Any, Any] | None = None) -> "KNNHead":
        """`val=(X_val, y_val)` selects k and T there; without it, leave-one-out on train."""
        X, y = check_xy(X, y)
        self._validate_params_()
        classes, yi = np.unique(y, return_inverse=True)
        keys = torch.as_tensor(l2rows(X)).to(getattr(torch, self.dtype))
        key_labels = torch.as_tensor(yi, dtype=torch.long)
        grid = [(int(k), None if self.weighting == "uniform" else float(t))
                for k in np.atleast_1d(self.k) for t in (np.atleast_1d(self.temperature) if self.weighting == "softmax" else [0])]
        self.k_, self.temperature_, self.selection_ = self._select(grid, X, yi, keys, key_labels, classes, val)
        self.keys_, self.key_labels_, self.classes_ = keys, key_labels, classes
        self.n_features_in_ = X.shape[1]
        return self

    def _select(self, grid: list, X: np.ndarray, yi: np.ndarray, keys: torch.Tensor, key_labels: torch.Tensor,
                classes: np.ndarray, val: tuple[Any, Any] | None) -> tuple[int, float | None, str]:
        if len(grid) == 1:
            return grid[0][0], grid[0][1], "fixed"
        if val is not None:
            xv, yv = check_xy(*val)
            truth = np.searchsorted(classes, yv)
            sims, idx = blocked_topk(torch.as_tensor(l2rows(xv)).to(keys.dtype), keys, max(k for k, _ in grid))
            how = "val"
        elif np.bincount(yi).min() >= 2:
            rows = np.random.default_rng(self.seed).permutation(len(X))[:self.loo_queries]
            truth = yi[rows]
            sims, idx = blocked_topk(keys[rows], keys, max(k for k, _ in grid), self_index=rows)
            how = f"leave-one-out ({len(rows)} train rows)"
        else:
            k = min(k for k, _ in grid)
            return k, (None if self.weighting == "uniform" else 0.07), "rule (a class has < 2 rows: smallest k, T=0.07)"
        labels = key_labels[idx]
        accs = [(vote(sims, labels, len(classes), k=k, temperature=t).argmax(1).numpy() == truth).mean() for k, t in grid]
        best = grid[int(np.argmax(accs))]
        return best[0], best[1], how

    def predict_proba(self, X: Any) -> np.ndarray:
        X = self._check_X(X)
        sims, idx = blocked_topk(torch.as_tensor(l2rows(X)).to(self.keys_.dtype), self.keys_, self.k_)
        return vote(sims, self.key_labels_[idx], len(self.classes_), k=self.k_, temperature=self.temperature_).numpy()

    def decision_function(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X) + 1e-12)
