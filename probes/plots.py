"""PNG plots people would rather look at than read: confusion matrix and per-class accuracy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (CI and servers have no display)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, *, title: str) -> Path:
    """Row-normalised confusion matrix; class names on the axes while they stay readable (<= 40)."""
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    k = len(classes)
    size = min(4 + 0.25 * k, 16)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if k <= 40:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_class(per_class: dict[str, dict[str, float | None]], path: Path, *, title: str) -> Path:
    """Per-class accuracy sorted from worst to best, one line per run (the worst classes are on the left)."""
    names = list(per_class)
    first = per_class[names[0]]
    order = sorted(first, key=lambda c: (first[c] is None, first[c] if first[c] is not None else 0))
    fig, ax = plt.subplots(figsize=(min(4 + 0.12 * len(order), 18), 4.5))
    for name in names:
        vals = [per_class[name][c] if per_class[name][c] is not None else np.nan for c in order]
        ax.plot(range(len(order)), vals, marker="o" if len(order) <= 60 else None, ms=3, lw=1.2, label=name)
    if len(order) <= 60:
        ax.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
    else:
        ax.set_xlabel(f"{len(order)} classes, sorted by accuracy of {names[0]}")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
