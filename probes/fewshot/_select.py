"""Hyper-parameters chosen without the evaluation split: stratified K-fold inside the shots, or a stated rule."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold


def cv_folds(y: np.ndarray, *, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Stratified folds with every class in every training part, or None when a class has < 2 shots."""
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    n = min(n_folds, int(counts.min()))
    if n < 2:
        return None
    return list(StratifiedKFold(n_splits=n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def select_by_cv(grid: Sequence[Any], score_path: Callable[[Sequence[Any], np.ndarray, np.ndarray], Sequence[float]],
                 y: np.ndarray, *, n_folds: int, seed: int, default: Any) -> tuple[Any, str]:
    """The grid value with the best mean held-out accuracy; `default` (the rule) when no fold fits.

    `score_path(grid, train_idx, held_idx)` fits every grid value on one part (warm-starting along
    the grid as it likes) and returns their accuracies on the other.
    Returns (value, how) where how is "cv(n folds)", "fixed" or "rule (k too small for cv)".
    """
    if len(grid) == 1:
        return grid[0], "fixed"
    folds = cv_folds(y, n_folds=n_folds, seed=seed)
    if folds is None:
        return default, "rule (k too small for cv)"
    means = np.mean([score_path(grid, tr, te) for tr, te in folds], axis=0)
    return grid[int(np.argmax(means))], f"cv({len(folds)} folds)"
