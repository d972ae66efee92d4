"""`featstore audit`: duplicates, leaks and likely label errors of one feature set; the one-line summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from featstore.cli.boundary import CacheOpt, boundary, err, out


def render_audit_line(ref: str | Path | tuple[str, ...], *, cache: Optional[Path] = None) -> None:
    """One line on stderr: what `featstore audit` would find (skipped, with a hint, on very large sets).
    ``ref``: a feature set folder, a reference, or a fit's references (the first one is audited)."""
    if isinstance(ref, tuple):
        if not ref:
            return
        ref = ref[0]
    from featstore.audit import AUTO_MAX_ROWS, audit_feature_set
    from featstore.store import FeatureSet, open_feature_set

    fs = FeatureSet.open(ref) if isinstance(ref, Path) else open_feature_set(ref, cache=cache)
    n = sum(fs.count(s) for s in fs.splits)
    if n > AUTO_MAX_ROWS:
        err.print(f"audit: skipped ({n:,} images); run featstore audit {fs.key}", highlight=False)
        return
    from featstore.errors import StoreError

    try:
        res = audit_feature_set(fs)
    except StoreError as e:  # a summary line never fails the command it follows (extract, import, fit)
        err.print(f"[yellow]audit: not summarised[/]: {e}", highlight=False, soft_wrap=True)
        return
    style = "yellow" if res.leaks else "dim"
    err.print(f"[{style}]{res.summary()}[/]" + ("  (featstore audit lists them)" if res.clusters else ""),
              highlight=False, soft_wrap=True)


@boundary
def audit(
    ref: Annotated[str, typer.Argument(metavar="SET", help="Feature set key (or prefix), encoder/key, or encoder name.")],
    cache: CacheOpt = None,
    threshold: Annotated[float, typer.Option(help="Cosine of the centred stored features (each minus the set's mean vector) over which two images count as copies; lower finds more, with more false pairs.")] = 0.9,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the clusters and label issues as JSON.")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write the clusters as CSV, one row per image.")] = None,
    exclude_file: Annotated[Optional[Path], typer.Option("--exclude-file", help="Write split/id of the images to drop (one copy per cluster stays; test images are never listed).")] = None,
    labels: Annotated[bool, typer.Option(help="Also rank likely label errors (confident learning on out-of-fold probabilities).")] = True,
    oof: Annotated[Optional[Path], typer.Option(help="Out-of-fold probabilities to use: runs/<run>/predictions-oof.npz of `probes fit --cv`. Default: a logistic regression's own 5-fold OOF (up to 20k images).")] = None,
    memory_gb: Annotated[float, typer.Option("--memory-gb", help="Vectors held at once (the rest streams from the shards).")] = 4.0,
    top: Annotated[int, typer.Option(help="Rows shown per table.")] = 20,
) -> None:
    """Exact and near duplicates as clusters (pairs across train/val/test first), and likely label errors."""
    from featstore.audit import audit_feature_set, check_labels
    from featstore.audit.export import cluster_records, label_records, write_outputs
    from featstore.store import open_feature_set

    fs = open_feature_set(ref, cache=cache)
    with err.status(f"auditing {fs.encoder}/{fs.key} ..."):
        res = audit_feature_set(fs, threshold=threshold, budget_bytes=memory_gb * 1e9)
        if labels:
            res = check_labels(res, fs, oof=oof)
    table = Table(title=f"duplicate clusters (cos >= {threshold:g}; leaks first)", title_justify="left")
    for col in ("#", "kind", "splits", "images", "min cos", "members"):
        table.add_column(col)
    for c in cluster_records(res)[:top]:
        names = ", ".join(f"{m['split']}/{m['id']}" for m in c["images"][:4]) + (" ..." if len(c["images"]) > 4 else "")
        table.add_row(str(c["cluster"]), c["kind"], "+".join(c["splits"]), str(len(c["images"])), f"{c['min_cos']:.3f}",
                      names, style="bold red" if c["leak"] else None)
    out.print(table)
    issues = label_records(res)
    if issues:
        lt = Table(title="likely label errors (lowest probability of the given label first)", title_justify="left")
        for col in ("image", "given", "p(given)", "suggested", "p(suggested)"):
            lt.add_column(col)
        for r in issues[:top]:
            lt.add_row(f"{r['split']}/{r['id']}", r["given"], f"{r['given_prob']:.2f}", r["suggested"],
                       f"{r['suggested_prob']:.2f}")
        out.print(lt)
    if res.label_note:
        err.print(res.label_note, style="dim", highlight=False)
    out.print(res.summary(), highlight=False)
    for p in write_outputs(res, json_path=json_out, csv_path=csv_out, exclude=exclude_file):
        out.print(f"wrote {p}", highlight=False)
