"""probes evaluate: metrics and plots of one or several runs side by side, or of their ensemble."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probes.data import ProbesError
from probes.metrics import classification_metrics
from probes.plots import plot_confusion, plot_per_class
from probes.ensemble import ensemble_predictions, ensemble_weights
from probes.runs import Predictions, Run


@dataclass
class Evaluation:
    split: str
    rows: dict[str, dict[str, Any]]  # run name (or "ensemble") -> metrics
    plots: list[Path] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)  # ensemble weight per run, chosen on val


def _dataset(run: Run) -> str:
    return ",".join(dict.fromkeys(f.get("dataset") or "" for f in run.config.get("features", [])))


def check_comparable(runs: list[Run], split: str) -> None:
    """Runs side by side must score the same images of the same classes: runs of different datasets are refused.
    (Not by dataset name: an imported set is named after itself, so two imports of one dataset differ by name.)"""
    first = runs[0]
    for r in runs[1:]:
        why = ("other classes" if r.config["classes"] != first.config["classes"] else
               f"other {split} images" if r.has(split) and first.has(split)
               and not np.array_equal(r.predictions(split).ids, first.predictions(split).ids) else None)
        if why:
            raise ProbesError(f"runs {first.id} ({_dataset(first) or '?'}) and {r.id} ({_dataset(r) or '?'}) are of "
                              f"different datasets ({why}): evaluate them separately")


def split_of(runs: list[Run]) -> str:
    """val when every run has one, OOF when every run was cross-validated; a mix is refused with what to do."""
    if all(r.has("val") for r in runs):
        return "val"
    if all(r.has("oof") for r in runs):
        return "oof"
    cv = [r.id for r in runs if not r.has("val")]
    raise ProbesError(f"runs {', '.join(cv)} were selected by K-fold CV (out-of-fold predictions), the others on the "
                      "val split: their scores are not comparable; evaluate them separately, or refit the val runs "
                      "with --cv K so all are scored out-of-fold")


def evaluate_runs(runs: list[Run], *, split: str = "val", ensemble: bool = False, plots_dir: Path | None = None) -> Evaluation:
    """Metrics per run (plus the ensemble when asked); PNGs in plots_dir (default: the first run's folder)."""
    if not runs:
        raise ProbesError("no runs to evaluate")
    check_comparable(runs, split)
    classes = runs[0].config["classes"]
    named: dict[str, Predictions] = {r.id: r.predictions(split) for r in runs}
    if ensemble:
        if len(runs) < 2:
            raise ProbesError("--ensemble needs at least two runs")
        weights = ensemble_weights(runs)
        named = {"ensemble": ensemble_predictions(runs, split, weights), **named}
        out_weights = {r.id: float(w) for r, w in zip(runs, weights)}
    rows = {}
    for name, p in named.items():
        if (p.labels < 0).any():
            raise ProbesError(f"{split} split of {name} is unlabeled; evaluate on val")
        own = next((r.config["classes"] for r in runs if r.id == name), classes)  # each run labelled by its own classes
        rows[name] = classification_metrics(p.probs, p.labels, own)
    out = Evaluation(split=split, rows=rows, weights=out_weights if ensemble else {})
    folder = Path(plots_dir) if plots_dir else runs[0].folder
    folder.mkdir(parents=True, exist_ok=True)
    best = max(rows, key=lambda n: rows[n]["top1"])
    out.plots.append(plot_confusion(rows[best]["confusion"], classes, folder / f"confusion-{split}.png",
                                    title=f"{best}: {split} confusion (top-1 {rows[best]['top1']:.1%})"))
    out.plots.append(plot_per_class({n: m["per_class_acc"] for n, m in rows.items()}, folder / f"per-class-{split}.png",
                                    title=f"per-class {split} accuracy"))
    return out
