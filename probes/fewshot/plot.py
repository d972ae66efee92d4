"""The few-shot curve: accuracy vs shots per head with 95% bands, zero-shot as a horizontal line."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probes.fewshot.protocol import FewShotResult  # noqa: E402


def plot_fewshot(res: FewShotResult, path: Path, *, title: str = "few-shot accuracy on val") -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for head in dict.fromkeys(r["head"] for r in res.rows):
        rows = sorted((r for r in res.rows if r["head"] == head), key=lambda r: r["shots"])
        if head == "zeroshot":
            ax.axhline(rows[0]["mean"], color="black", ls="--", lw=1.2, label=f"zeroshot ({rows[0]['mean']:.1%})")
            continue
        k = np.array([r["shots"] for r in rows])
        m = np.array([r["mean"] for r in rows])
        h = np.array([r["ci95"] for r in rows])
        (line,) = ax.plot(k, m, marker="o", ms=4, lw=1.5, label=head)
        ax.fill_between(k, m - h, m + h, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ks = res.meta.get("shots", [])
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
