"""Figures of the report as inline PNG data URIs (matplotlib, no files, no network at view time)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def reliability_png(named: dict[str, tuple[np.ndarray, np.ndarray]], *, bins: int = 15) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal, one line per run."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for name, (probs, labels) in named.items():
        conf, correct = probs.max(1), probs.argmax(1) == labels
        which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
        xs, ys = [], []
        for b in range(bins):
            m = which == b
            if m.sum() >= 3:  # a bin of one or two images says nothing
                xs.append(conf[m].mean())
                ys.append(correct[m].mean())
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=name[-40:])
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
