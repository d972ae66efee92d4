"""`probes report`: one static HTML file with metrics, calibration, per-class accuracy, confusions and the audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from featstore.cli.boundary import CacheOpt, boundary, err, out

RunsOpt = Annotated[Optional[Path], typer.Option("--runs", help="Runs folder. Default: $PROBES_RUNS or ./runs.", show_default=False)]


@boundary
def report(
    run_ids: Annotated[Optional[list[str]], typer.Argument(metavar="[RUN]...", help="Run ids (or prefixes). Default: the newest run. Several: compared side by side.")] = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write (self-contained, opens offline).")] = Path("report.html"),
    runs: RunsOpt = None,
    cache: CacheOpt = None,
    audit: Annotated[bool, typer.Option(help="Include the data audit of the first run's features (duplicates, leaks, label errors).")] = True,
    threshold: Annotated[Optional[float], typer.Option(help="Near-duplicate cosine for the audit (default 0.9).")] = None,
) -> None:
    """Write report.html: metrics, calibration, sortable per-class accuracy, confused pairs with thumbnails, audit."""
    from probes.report import build_report
    from probes.runs import resolve_run

    chosen = [resolve_run(r, runs=runs) for r in (run_ids or [None])]
    with err.status("writing report ..."):
        path = build_report(chosen, out_path, cache=cache, audit=audit, threshold=threshold)
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", highlight=False)
