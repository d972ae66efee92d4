"""Fold groups from the audit's duplicate clusters: a copy never sits in one fold while its original is in another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from featstore.audit import DEFAULT_THRESHOLD, audit_feature_set
from probes.data import Features


def duplicate_groups(feats: Features, splits: Sequence[str], *,
                     threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, int]:
    """Group id per row of ``splits`` concatenated in that order (the rows a CV folds), and how many duplicate
    clusters (byte-identical or cos >= threshold on the first feature set) joined two rows or more."""
    res = audit_feature_set(feats.sets[0], threshold=threshold)
    offset, pos = 0, {}
    for s in splits:
        for r, i in enumerate(feats.split(s).ids):
            pos[(s, i)] = offset + r
        offset += len(feats.split(s).ids)
    groups = np.arange(offset)
    grouped = 0
    for c in res.clusters:
        rows = [pos[k] for k in zip(res.rows.splits[c.rows], res.rows.ids[c.rows]) if k in pos]
        if len(rows) > 1:
            groups[rows] = rows[0]
            grouped += 1
    return groups, grouped


def grouped_folds(feats: Features, splits: Sequence[str], y: np.ndarray, *, k: int,
                  seed: int) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], str]:
    """Stratified K folds that keep each duplicate cluster whole (StratifiedGroupKFold), and what was done."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    groups, grouped = duplicate_groups(feats, splits)
    if not grouped:
        return StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y), "no duplicate clusters"
    folds = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, y, groups)
    return folds, f"{grouped} duplicate clusters kept inside one fold"


def holdout_note(feats: Features, *, threshold: float = DEFAULT_THRESHOLD) -> str:
    """A warning for the selection line when val holds copies of train images ('' when it does not)."""
    res = audit_feature_set(feats.sets[0], threshold=threshold)
    val = train = 0
    for c in res.leaks:
        sp = res.rows.splits[c.rows]
        if "train" in c.splits and "val" in c.splits:
            val, train = val + int((sp == "val").sum()), train + int((sp == "train").sum())
    if not val:
        return ""
    return (f"; warning: {val} val images are copies of {train} train images (byte-identical or cos >= "
            f"{threshold:g}), val accuracy is optimistic (featstore audit lists them)")
