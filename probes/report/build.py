"""probes report: one offline HTML file about one or several runs, with the audit of their features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featstore.errors import StoreError
from probes.data import ProbesError
from probes.metrics import classification_metrics
from probes.report.figures import reliability_png
from probes.report.page import page
from probes.report.sections import audit_section, confused_section, metrics_section, per_class_section
from probes.report.thumbs import Thumbnails
from probes.runs import Run


def build_report(runs: list[Run], out: Path, *, cache: Path | None = None, audit: bool = True,
                 threshold: float | None = None) -> Path:
    """Writes ``out`` (one self-contained file) and returns it. Evaluates val predictions when every run has
    them, else the out-of-fold ones; confused pairs and thumbnails come from the first run."""
    if not runs:
        raise ProbesError("no runs to report")
    classes = runs[0].config["classes"]
    if any(r.config["classes"] != classes for r in runs[1:]):
        raise ProbesError("the runs have different class lists; report them separately")
    split = "val" if all(r.has("val") for r in runs) else "oof"
    preds = {r.id: r.predictions(split) for r in runs}
    rows = {n: classification_metrics(p.probs, p.labels, classes) for n, p in preds.items()}
    fs = _feature_set(runs[0], cache)
    thumbs = Thumbnails(fs)
    first = preds[runs[0].id]
    where = ["val"] if split == "val" else ["train", "val"]
    thumb = (lambda i: next((u for s in where if (u := thumbs.uri(s, i))), None))
    sections = [
        (f"Metrics ({split})", metrics_section(rows, {r.id: r.metrics.get("seconds", 0.0) for r in runs})
         + "".join(f'<p class="note">{r.id}: {r.metrics.get("selection", "")}</p>' for r in runs)),
        ("Calibration", f'<img alt="reliability diagram" src="{reliability_png({n: (p.probs, p.labels) for n, p in preds.items()})}">'),
        ("Per-class accuracy (click a header to sort)",
         per_class_section(rows, classes, np.bincount(first.labels, minlength=len(classes)))),
        (f"Most confused class pairs ({runs[0].id})", confused_section(first, classes, thumb)),
    ]
    if audit and fs is not None:
        sections.append(("Data audit", _audit(fs, runs[0], thumbs, threshold)))
    elif audit:
        sections.append(("Data audit", "<p>feature set not found in the store: no audit</p>"))
    if thumbs.note:
        sections.append(("Notes", f"<p>{thumbs.note}</p>"))
    title = "probes report: " + ", ".join(r.id for r in runs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(title, sections), encoding="utf-8")
    return out


def _feature_set(run: Run, cache: Path | None):
    from featstore.store import open_feature_set

    ref = run.config["features"][0]
    try:
        return open_feature_set(f"{ref['encoder']}/{ref['key']}", cache=cache)
    except StoreError:
        return None


def _audit(fs, run: Run, thumbs: Thumbnails, threshold: float | None) -> str:
    from featstore.audit import DEFAULT_THRESHOLD, audit_feature_set, check_labels
    from featstore.audit.export import cluster_records, label_records

    res = audit_feature_set(fs, threshold=threshold or DEFAULT_THRESHOLD)
    oof = run.folder / "predictions-oof.npz"
    res = check_labels(res, fs, oof=oof if oof.exists() else None)
    return audit_section(cluster_records(res), label_records(res), res.summary(), res.label_note, thumbs.uri)
