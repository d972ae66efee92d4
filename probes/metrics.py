"""Metrics of class probabilities against labels: top-k, macro-F1, per-class accuracy, calibration, confusions."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): |accuracy - confidence| weighted by bin size."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, *, k: int) -> float:
    """Fraction whose label is among the k most probable classes (k capped at the class count)."""
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(1).mean())


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str], *, top_pairs: int = 10) -> dict[str, Any]:
    """Everything `probes evaluate` shows for one split; labels must be >= 0."""
    k = len(classes)
    pred = probs.argmax(1)
    all_labels = np.arange(k)
    cm = confusion_matrix(labels, pred, labels=all_labels)
    support = cm.sum(1)
    per_class = np.divide(np.diag(cm), support, out=np.full(k, np.nan), where=support > 0)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:top_pairs]
    pairs = [{"true": classes[i], "pred": classes[j], "count": int(off[i, j])}
             for i, j in zip(*np.unravel_index(flat, off.shape)) if off[i, j] > 0]
    return {
        "n": int(len(labels)),
        "top1": float((pred == labels).mean()),
        "top5": top_k_accuracy(probs, labels, k=5),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=np.unique(labels), zero_division=0)),
        "ece": expected_calibration_error(probs, labels),
        "per_class_acc": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class)},
        "confused_pairs": pairs,
        "confusion": cm,
    }
