"""One pass over a feature set: exact and near duplicates as clusters (leaks first), likely label errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featstore.audit.cache import load_pairs, pairs_key, save_pairs
from featstore.audit.clusters import Cluster, build_clusters, hash_pairs, rows_to_drop
from featstore.audit.labels import LabelIssues, find_label_issues, oof_probabilities
from featstore.audit.neighbours import close_pairs
from featstore.audit.rows import AuditRows, store_rows
from featstore.store import FeatureSet

# Cosine of the centred stored vectors over which two count as the same picture (see close_pairs). On
# the planted copies of tests/test_audit.py (blur, re-encode, 1-pixel shift, darkening; pixels): 0.9
# finds 52 of 52 with no false pair, 0.95 finds 44; 0.85 still has no false pair there.
DEFAULT_THRESHOLD = 0.9
# Past this many images the automatic audits (the line after extract and after fit, fit's fold grouping)
# are skipped with a note: 200k rows took 240 s on 2 busy cores, and the cost grows with the square.
AUTO_MAX_ROWS = 200_000
LABEL_ROWS = 20_000  # over this many labeled rows the audit's own logistic OOF is skipped (pass --oof)


@dataclass
class AuditResult:
    rows: AuditRows
    threshold: float
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]  # (i, j, cos) with cos >= threshold
    clusters: list[Cluster]
    labels: LabelIssues | None = None
    label_note: str = ""  # why labels were not checked, or where the probabilities came from
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    cached: bool = False  # the pairs were read from the set's audit cache, not computed

    @property
    def leaks(self) -> list[Cluster]:
        return [c for c in self.clusters if c.leak]

    def drop_keys(self) -> list[str]:
        """'split/id' of every image to drop so that one copy of each cluster remains."""
        return list(self.rows.keys()[rows_to_drop(self.clusters, self.rows.splits)])

    def summary(self) -> str:
        """The one line shown after extract and after fit."""
        copies = len(hash_pairs(self.rows.sha1)[0])
        leak_rows = sum(len(c.rows) for c in self.leaks)
        by_pair = ", ".join(f"{'/'.join(c)} {n}" for c, n in _leak_counts(self.leaks).items())
        line = (f"audit: {len(self.rows):,} images, {len(self.clusters)} duplicate clusters (same bytes or cos >= "
                f"{self.threshold:g}; {copies} byte-identical copies), "
                f"{len(self.leaks)} across splits" + (f" ({by_pair}; {leak_rows} images)" if self.leaks else ""))
        big = max((len(c.rows) for c in self.clusters), default=0)
        if big > max(10, len(self.rows) // 100):  # chains of look-alikes, not copies
            line += f"; largest cluster {big} images: raise --threshold for these features"
        if self.labels is not None:
            line += f", {len(self.labels.rows)} likely label errors"
        return line + f"  [{self.seconds:.1f} s{', cached' if self.cached else ''}]"


def _leak_counts(leaks: list[Cluster]) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for c in leaks:
        out[c.splits] = out.get(c.splits, 0) + 1
    return out


def audit_rows(rows: AuditRows, *, threshold: float = DEFAULT_THRESHOLD, budget_bytes: float = 4e9) -> AuditResult:
    """Duplicates only (no label check): what fit needs to group its folds."""
    t0 = time.perf_counter()
    i, j, c = close_pairs(rows.blocks, n=len(rows), dim=rows.dim, threshold=threshold, budget_bytes=budget_bytes)
    clusters = build_clusters(len(rows), rows.splits, rows.sha1, i, j, c)
    return AuditResult(rows=rows, threshold=threshold, pairs=(i, j, c), clusters=clusters,
                       seconds=time.perf_counter() - t0)


_MEMO: dict[tuple, AuditResult] = {}


def audit_feature_set(fs: FeatureSet, *, threshold: float = DEFAULT_THRESHOLD, budget_bytes: float = 4e9,
                      splits: list[str] | None = None) -> AuditResult:
    """Duplicates of a stored set, streamed from its shards. The pairs are kept beside the set (``cache``:
    keyed by the rows, the manifest, the threshold and the audit's version), so every later fit on an
    unchanged set reads them instead of recomputing (3.5-4.7 s at 22,500 x 1408); and remembered per
    process, so the summary after a fit and the fit's fold grouping read them once."""
    memo = (str(fs.folder), fs.manifest.get("updated"), threshold, tuple(splits or fs.splits))
    if memo not in _MEMO:
        t0 = time.perf_counter()
        rows = store_rows(fs, splits)
        key = pairs_key(fs, rows, threshold=threshold)
        pairs = load_pairs(fs, key)
        if pairs is None:
            res = audit_rows(rows, threshold=threshold, budget_bytes=budget_bytes)
            save_pairs(fs, key, res.pairs)
        else:
            res = AuditResult(rows=rows, threshold=threshold, pairs=pairs, cached=True,
                              clusters=build_clusters(len(rows), rows.splits, rows.sha1, *pairs),
                              seconds=time.perf_counter() - t0)
        res.classes = fs.classes
        _MEMO.clear()
        _MEMO[memo] = res
    return _MEMO[memo]


def check_labels(res: AuditResult, fs: FeatureSet, *, oof: Path | None = None, max_rows: int = LABEL_ROWS,
                 seed: int = 0) -> AuditResult:
    """Adds likely label errors: from a run's out-of-fold predictions file when given (``predictions-oof.npz``
    of ``probes fit --cv``), else from a logistic regression's own out-of-fold probabilities."""
    if oof is not None:
        with np.load(oof, allow_pickle=False) as z:
            ids, probs, labels = z["ids"].astype(object), z["probs"], z["labels"]
        key = {i: r for r, i in enumerate(res.rows.ids) if res.rows.splits[r] in ("train", "val")}
        rows = np.array([key.get(i, -1) for i in ids])
        found = find_label_issues(probs, labels)
        res.labels = _remap(found, rows)
        res.label_note = f"out-of-fold probabilities from {oof}"
        return res
    lab = np.flatnonzero((res.rows.labels >= 0) & np.isin(res.rows.splits, ["train", "val"]))
    if len(lab) > max_rows:
        res.label_note = (f"label check skipped: {len(lab):,} labeled images > {max_rows:,}; pass --oof "
                          "runs/<run>/predictions-oof.npz from a `probes fit --cv` run")
        return res
    x = np.concatenate(list(res.rows.blocks()))[lab].astype(np.float32)
    x = x.mean(1) if x.ndim == 3 else x
    groups = np.arange(len(res.rows))
    for k, c in enumerate(res.clusters):
        groups[c.rows] = len(res.rows) + k
    y = res.rows.labels[lab]
    probs = oof_probabilities(x, y, groups=groups[lab], seed=seed)
    res.labels = _remap(find_label_issues(probs, y), lab)
    res.label_note = "out-of-fold probabilities of a logistic regression (5 folds, duplicates grouped)"
    return res


def _remap(found: LabelIssues, rows: np.ndarray) -> LabelIssues:
    keep = rows[found.rows] >= 0
    return LabelIssues(rows=rows[found.rows][keep], given=found.given[keep], suggested=found.suggested[keep],
                       given_prob=found.given_prob[keep], suggested_prob=found.suggested_prob[keep])
