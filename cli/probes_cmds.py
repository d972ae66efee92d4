"""`probes`: fit, runs, evaluate, submit; each parses, calls one library function, renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cli.audit_cmds import render_audit_line
from cli.common import CacheOpt, boundary, err, out
from cli.report_cmds import report

probes_app = typer.Typer(help="Train, compare, evaluate and submit classifier heads on cached features.",
                         no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
probes_app.command()(report)

RunsOpt = Annotated[Optional[Path], typer.Option("--runs", help="Runs folder. Default: $PROBES_RUNS or ./runs.", show_default=False)]


def _parse_params(items: list[str]) -> dict[str, Any]:
    """`--param C=0.5 --param hidden=1024,512` -> {"C": 0.5, "hidden": (1024, 512)}."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        try:
            val = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            val = raw
        out[key.strip()] = val
    return out


@probes_app.command()
@boundary
def fit(
    features: Annotated[str, typer.Option("--features", "-f", help="Feature set(s): encoder name or key, comma-separated to concatenate per image (e.g. eva_giant_336,clip_vit_l14).")],
    head: Annotated[str, typer.Option(help="logistic (multinomial L2, solved to convergence) or mlp (GELU, dropout, AdamW + OneCycleLR).")] = "logistic",
    cache: CacheOpt = None,
    runs: RunsOpt = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Train a grid (lr x weight decay, and width for mlp) in one batched pass; select on val; print the grid.")] = False,
    final: Annotated[bool, typer.Option("--final", help="After selection, refit the chosen configuration on train+val (test predictions come from it).")] = False,
    cv: Annotated[Optional[int], typer.Option("--cv", min=2, help="Stratified K-fold over all labeled images instead of the val split (default 5 when there is no val split).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same head.")] = 0,
    normalize: Annotated[Optional[str], typer.Option(help="standard (per feature, fitted on train), l2 or none. Default: standard.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda.")] = "auto",
    memory_gb: Annotated[Optional[float], typer.Option("--memory-gb", help="Memory budget in GB for the fit's data: train features in float32 plus the head's working copies (logistic: ~8 x dim + 16 x classes bytes per train row; mlp: ~12 x dim). Above it the head streams fp16 blocks from the store instead of loading them: the logistic head in passes, the MLP in shuffled windows (peak ~1 GB whatever the size). Default: $PROBES_MEMORY_GB or 4.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Head parameter NAME=VALUE, repeatable (e.g. -p C=0.1, -p hidden=1024, -p epochs=30).")] = None,
) -> None:
    """Train a head on cached features, select it on val, save a run (runs/<id>/)."""
    from probes.train import FitRequest, fit_run

    req = FitRequest(features=tuple(f.strip() for f in features.split(",") if f.strip()), head=head, sweep=sweep,
                     final=final, cv=cv, seed=seed, normalize=normalize, device=device, params=_parse_params(param or []),
                     memory_budget_gb=memory_gb)
    with err.status(f"fitting {head} on {features} ..."):
        res = fit_run(req, cache=cache, runs=runs)
    render_audit_line(req.features, cache=cache)
    if res.table:
        render_table(res.table, title="selection" if not sweep else "sweep (val)")
    m = res.run.metrics
    out.print(f"[bold]{res.run.id}[/]  val top-1 {m['val_top1']:.2%}  top-5 {m['val_top5']:.2%}  "
              f"macro-F1 {m['val_macro_f1']:.3f}  ({res.mode}; {res.seconds:.1f} s)", highlight=False)
    out.print(f"params: {res.run.config['params']}  ->  {res.run.folder}", highlight=False)


def render_table(rows: list[dict[str, Any]], *, title: str, best_key: str = "val_top1") -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    best = max(rows, key=lambda r: r.get(best_key, -1)) if any(best_key in r for r in rows) else None
    table = Table(title=title, title_justify="left")
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r.get(c, "") for c in cols)]
        table.add_row(*cells, style="bold green" if r is best else None)
    out.print(table)


@probes_app.command("runs")
@boundary
def list_runs_cmd(runs: RunsOpt = None) -> None:
    """Table of saved runs: id, features, head, val top-1, time."""
    from probes.runs import list_runs

    all_runs = list_runs(runs)
    if not all_runs:
        err.print(f"no runs in {runs or 'runs'}")
        return
    table = Table()
    for c in ("run", "features", "head", "val top-1", "val top-5", "selection", "seconds"):
        table.add_column(c)
    for r in all_runs:
        feats = "+".join(f["encoder"] for f in r.config["features"])
        table.add_row(r.id, feats, r.config["head"], f"{r.metrics['val_top1']:.2%}", f"{r.metrics['val_top5']:.2%}",
                      r.metrics.get("selection", ""), f"{r.metrics.get('seconds', 0):.1f}")
    out.print(table)


@probes_app.command()
@boundary
def evaluate(
    run_ids: Annotated[Optional[list[str]], typer.Argument(metavar="[RUN]...", help="Run ids (or prefixes). Default: the newest run.")] = None,
    runs: RunsOpt = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Also evaluate the average of the runs' probabilities.")] = False,
    plots: Annotated[Optional[Path], typer.Option(help="Folder for the PNGs. Default: the first run's folder.")] = None,
    top: Annotated[int, typer.Option(help="How many confused class pairs to list.")] = 10,
) -> None:
    """Top-1/top-5, macro-F1, calibration, worst classes and confused pairs; confusion and per-class PNGs."""
    from probes.evaluate import evaluate_runs
    from probes.runs import resolve_run

    chosen = [resolve_run(r, runs=runs) for r in (run_ids or [None])]
    split = "val" if all(r.has("val") for r in chosen) else "oof"
    ev = evaluate_runs(chosen, split=split, ensemble=ensemble, plots_dir=plots)
    table = Table(title=f"{split} metrics", title_justify="left")
    for c in ("run", "n", "top-1", "top-5", "macro-F1", "ECE", "worst classes"):
        table.add_column(c)
    for name, m in ev.rows.items():
        worst = sorted((a, c) for c, a in m["per_class_acc"].items() if a is not None)[:3]
        table.add_row(name, str(m["n"]), f"{m['top1']:.2%}", f"{m['top5']:.2%}", f"{m['macro_f1']:.3f}",
                      f"{m['ece']:.3f}", ", ".join(f"{c} {a:.0%}" for a, c in worst))
    out.print(table)
    first = next(iter(ev.rows.values()))
    if first["confused_pairs"]:
        pairs = Table(title=f"most confused ({next(iter(ev.rows))})", title_justify="left")
        for c in ("true", "predicted as", "count"):
            pairs.add_column(c)
        for p in first["confused_pairs"][:top]:
            pairs.add_row(p["true"], p["pred"], str(p["count"]))
        out.print(pairs)
    for p in ev.plots:
        out.print(f"plot: {p}", highlight=False)


@probes_app.command()
@boundary
def submit(
    run_id: Annotated[Optional[str], typer.Argument(metavar="[RUN]", help="Run id (or prefix). Default: the newest run.")] = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")] = Path("submission.csv"),
    fmt: Annotated[str, typer.Option("--format", help="mva (Id,Category; Id = test file stem) or boostcamp (ID,image_path,target in test.csv order).")] = "mva",
    sample: Annotated[Optional[Path], typer.Option(help="The competition's sample CSV: rows are written in its order, and its ids must match.")] = None,
    ensemble: Annotated[Optional[list[str]], typer.Option("--ensemble", help="Average these runs instead (repeat the option per run).")] = None,
    runs: RunsOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Write the competition CSV from a run's (or an ensemble's) test predictions, validated before writing."""
    from probes.predict import submission_for

    path, n = submission_for(run_id, ensemble=ensemble, out=out_path, fmt=fmt, sample=sample, runs=runs, cache=cache)
    out.print(f"wrote {path} ({n:,} rows, format {fmt})", highlight=False)
