"""Cross-validation folds, built in one place: stratified, and grouped when rows come in groups."""

from __future__ import annotations

import numpy as np


def make_folds(y: np.ndarray, *, n_splits: int, groups: np.ndarray | None = None,
               seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, held-out indices) per fold. ``StratifiedKFold`` (shuffled by ``seed``), or
    ``StratifiedGroupKFold`` when ``groups`` (one id per row, e.g. a near-duplicate cluster or the
    views of one image) are given: rows of a group never straddle two folds."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    if groups is None:
        return list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise ValueError(f"groups has {len(groups)} entries for {len(y)} rows")
    if len(np.unique(groups)) < n_splits:
        raise ValueError(f"{n_splits} folds need at least {n_splits} groups, got {len(np.unique(groups))}")
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))
