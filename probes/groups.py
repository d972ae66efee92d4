"""Fold groups from the audit's duplicate clusters: a copy never sits in one fold while its original is in another."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from featstore.audit import AUTO_MAX_ROWS, DEFAULT_THRESHOLD, audit_feature_set
from probes.data import Features


def duplicate_groups(feats: Features, splits: Sequence[str], *, threshold: float = DEFAULT_THRESHOLD,
                     max_size: int | None = None) -> tuple[np.ndarray, int, int]:
    """Group id per row of ``splits`` concatenated in that order (the rows a CV folds), how many duplicate
    clusters (byte-identical or cos >= threshold on the first feature set) joined two rows or more, and
    how many were left ungrouped for holding over ``max_size`` rows: clusters chain pair by pair, and
    when the threshold is below the similarity of distinct images (raw pixels of digits: one of 412)
    a cluster is no longer copies and no fold could hold it."""
    res = audit_feature_set(feats.sets[0], threshold=threshold)
    offset, pos = 0, {}
    for s in splits:
        for r, i in enumerate(feats.split(s).ids):
            pos[(s, i)] = offset + r
        offset += len(feats.split(s).ids)
    groups = np.arange(offset)
    grouped = too_big = 0
    for c in res.clusters:
        rows = [pos[k] for k in zip(res.rows.splits[c.rows], res.rows.ids[c.rows]) if k in pos]
        if max_size is not None and len(rows) > max_size:
            too_big += 1
        elif len(rows) > 1:
            groups[rows] = rows[0]
            grouped += 1
    return groups, grouped, too_big


def fold_groups(feats: Features, splits: Sequence[str], y: np.ndarray, *, k: int) -> tuple[np.ndarray | None, str]:
    """Group ids that keep each duplicate cluster inside one CV fold (None: nothing to group), and what was done."""
    n = sum(feats.sets[0].count(s) for s in feats.sets[0].splits)
    if n > AUTO_MAX_ROWS:
        return None, f"folds not grouped: {n:,} images > {AUTO_MAX_ROWS:,}; see featstore audit"
    limit = max(2, len(y) // (2 * k))
    groups, grouped, too_big = duplicate_groups(feats, splits, max_size=limit)
    said = (f"; {too_big} clusters over {limit} images left ungrouped: the threshold is "
            "below the similarity of distinct images here (featstore audit --threshold)") if too_big else ""
    if not grouped:
        return None, "no duplicate clusters" + said
    return groups, f"{grouped} duplicate clusters kept inside one fold" + said


def holdout_note(feats: Features, *, threshold: float = DEFAULT_THRESHOLD) -> str:
    """A warning for the selection line when val holds copies of train images ('' when it does not)."""
    if sum(feats.sets[0].count(s) for s in feats.sets[0].splits) > AUTO_MAX_ROWS:
        return ""  # too big to audit on the way; the line after fit says so
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
