"""Audit outputs on disk: clusters as CSV (one row per image) or JSON, label issues, and the exclude list."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from featstore.audit.audit import AuditResult


def cluster_records(res: AuditResult) -> list[dict[str, Any]]:
    """One dict per cluster, leaks first: what the JSON holds and the report shows."""
    r = res.rows
    return [{"cluster": k, "kind": "exact" if c.exact else "near", "leak": c.leak, "splits": list(c.splits),
             "min_cos": round(c.min_cos, 4),
             "images": [{"split": r.splits[i], "id": r.ids[i], "label": int(r.labels[i])} for i in c.rows]}
            for k, c in enumerate(res.clusters)]


def label_records(res: AuditResult) -> list[dict[str, Any]]:
    if res.labels is None:
        return []
    r, li, cls = res.rows, res.labels, res.classes
    name = (lambda c: cls[c] if 0 <= c < len(cls) else str(c))
    return [{"split": r.splits[i], "id": r.ids[i], "given": name(int(g)), "suggested": name(int(s)),
             "given_prob": round(float(gp), 4), "suggested_prob": round(float(sp), 4)}
            for i, g, s, gp, sp in zip(li.rows, li.given, li.suggested, li.given_prob, li.suggested_prob)]


def write_outputs(res: AuditResult, *, json_path: Path | None = None, csv_path: Path | None = None,
                  exclude: Path | None = None) -> list[Path]:
    """Writes what was asked; returns the paths written."""
    written = []
    if json_path:
        doc = {"threshold": res.threshold, "images": len(res.rows), "clusters": cluster_records(res),
               "label_issues": label_records(res), "label_note": res.label_note}
        Path(json_path).write_text(json.dumps(doc, indent=1))
        written.append(Path(json_path))
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["cluster", "kind", "leak", "split", "id", "label"])
            for c in cluster_records(res):
                for im in c["images"]:
                    w.writerow([c["cluster"], c["kind"], int(c["leak"]), im["split"], im["id"], im["label"]])
        written.append(Path(csv_path))
    if exclude:
        keys = res.drop_keys()
        Path(exclude).write_text("".join(k + "\n" for k in keys))
        written.append(Path(exclude))
    return written
