"""`probes`: fit, runs, evaluate, submit; each parses, calls one library function, renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from featstore.cli.audit import render_audit_line
from featstore.cli.boundary import CacheOpt, boundary, err, folder_option, out
from probes.cli.report import report

probes_app = typer.Typer(help="Train, compare, evaluate and submit classifier heads on cached features.",
                         no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
probes_app.command()(report)

RunsOpt = Annotated[Optional[Path], typer.Option("--runs", help="Runs folder. Default: $PROBES_RUNS or ./runs.", show_default=False, callback=folder_option)]


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


def _parse_grid(items: list[str]) -> dict[str, list[Any]] | None:
    """`--grid C=0.1,1 --grid shrink=1,10` -> {"C": [0.1, 1], "shrink": [1, 10]}; a tuple value keeps its commas."""
    import ast

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ValueError(f"--grid {item!r}: expected NAME=V1,V2,...")
        try:
            values = ast.literal_eval(f"[{raw}]")
        except (ValueError, SyntaxError):
            values = [v.strip() for v in raw.split(",")]
        grid[key.strip()] = values
    return grid or None


def _grids_help() -> str:
    """The built-in heads' default grids (a light import: --help must not load torch)."""
    from probes.default_grids import DEFAULT_GRIDS

    return "; ".join(f"{n}: " + " x ".join(f"{k}={','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vals)}"
                                           for k, vals in grid.items()) for n, grid in DEFAULT_GRIDS.items())


@probes_app.command()
@boundary
def fit(
    features: Annotated[str, typer.Option("--features", "-f", help="Feature set(s): encoder name or key, comma-separated to concatenate per image (e.g. eva_giant_336,clip_vit_l14).")],
    head: Annotated[str, typer.Option(help="A registered head (see `probes heads`): logistic (multinomial L2, solved to convergence), mlp (GELU, dropout, AdamW + OneCycleLR); knn, prototype; with --text: zeroshot, clap, lpp, tip, wise, zslogistic.")] = "logistic",
    cache: CacheOpt = None,
    runs: RunsOpt = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Train the head's grid (--grid, else its default) in one batched pass and select on val; for logistic the default search's points compete too, so a sweep never scores below the plain fit on val. Default grids -- " + _grids_help())] = False,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="Sweep grid axis NAME=V1,V2,... (repeatable; implies --sweep), e.g. --grid C=0.01,0.1,1 --grid shrink=1,100.")] = None,
    final: Annotated[bool, typer.Option("--final", help="After selection, refit the chosen configuration on train+val (test predictions come from it).")] = False,
    cv: Annotated[Optional[int], typer.Option("--cv", min=2, help="Stratified K-fold over all labeled images instead of the val split (default 5 when there is no val split).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same head.")] = 0,
    normalize: Annotated[Optional[str], typer.Option(help="standard (per feature, fitted on train), l2 or none. Default: none (the built-in heads normalise inside: the logistic head whitens, the MLP standardises).")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda.")] = "auto",
    memory_gb: Annotated[Optional[float], typer.Option("--memory-gb", help="Memory budget in GB for the fit's data: train features in float32 plus the head's working copies (logistic: ~10 x dim + 16 x classes bytes per train row; mlp: ~12 x dim). Above it the head streams fp16 blocks from the store instead of loading them: the logistic head in passes, the MLP in shuffled windows (peak ~1 GB whatever the size). On a GPU the working copies are checked against 90% of its free memory instead, and this budget covers the host's float32 rows (8 x dim bytes per row). Default: $PROBES_MEMORY_GB or 4.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Head parameter NAME=VALUE, repeatable (e.g. -p C=0.1, -p hidden=1024, -p epochs=30).")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average each val/test vector over its stored views (sets extracted with --views orig,hflip) before predicting.")] = False,
    train_views: Annotated[bool, typer.Option("--train-views", help="Use every stored view of a train image as a training row (CV keeps an image's views in one fold).")] = False,
    text: Annotated[Optional[str], typer.Option("--text", help="Class-name text embeddings for the text-aware heads (zeroshot, clap, lpp, tip, wise, zslogistic): a text set (featstore text / featstore import --text) or FILE.npz with classes and embeddings [K, D] or [K, T, D].")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset folder (or dataset name) whose feature sets a --features name means, when the name matches sets of several datasets. Default: the dataset of the current folder.", show_default=False)] = None,
) -> None:
    """Train a head on cached features, select it on val, save a run (runs/<id>/)."""
    from featstore.provenance import label_leak_warnings
    from featstore.store import open_feature_set
    from probes.cli.progress import RichFitProgress
    from probes.progress import reporting
    from probes.train import FitRequest, fit_run

    grids = _parse_grid(grid or [])
    names = [f.strip() for f in features.split(",") if f.strip()]
    keys = tuple(open_feature_set(f, cache=cache, dataset=data).key for f in names)  # a name never means two sets
    req = FitRequest(features=keys, head=head,
                     sweep=sweep or grids is not None, final=final, cv=cv, seed=seed, normalize=normalize, device=device,
                     params=_parse_params(param or []), grid=grids, memory_budget_gb=memory_gb, text=text,
                     tta=tta, train_views=train_views)
    for warning in label_leak_warnings(list(keys), cache=cache):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    with RichFitProgress(f"fitting {head} on {features}") as progress, reporting(progress):
        res = fit_run(req, cache=cache, runs=runs)
    render_audit_line(req.features, cache=cache)
    if res.table:
        render_table(res.table, title="selection" if not sweep else "sweep (val)")
    m = res.run.metrics
    out.print(f"[bold]{res.run.id}[/]  val top-1 {m['val_top1']:.2%}  top-5 {m['val_top5']:.2%}  "
              f"macro-F1 {m['val_macro_f1']:.3f}  ECE {m['val_ece_uncalibrated']:.3f} -> {m['val_ece']:.3f} "
              f"(T={m['temperature']:.3g})  ({res.mode}; {res.seconds:.1f} s)", highlight=False)
    out.print(f"selected: {res.run.config['selected']}  ->  {res.run.folder}", highlight=False)
    for f in res.run.config["features"]:
        out.print(f"features: {f['encoder']} key {f['key']}, dataset {f.get('dataset') or '?'}", highlight=False)


@probes_app.command("heads")
@boundary
def heads_cmd(
    name: Annotated[Optional[str], typer.Argument(help="One head (default: all).")] = None,
) -> None:
    """The registered heads and each one's parameters: default, valid values, default sweep grid."""
    from probes.heads.registry import get_head, head_names, head_parameters

    for n in [name] if name else head_names():
        entry = get_head(n)
        table = Table(title=f"{n}{' (streams)' if entry.streams else ''}: {entry.summary}", title_justify="left")
        for c in ("parameter", "default", "valid", "sweep grid", "meaning"):
            table.add_column(c)
        for row in head_parameters(n):
            grid = ",".join(map(str, row["grid"])) if row["grid"] else ""
            table.add_row(row["name"], repr(row["default"]), row["valid"], grid, row["help"])
        out.print(table)


@probes_app.command()
@boundary
def predict(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or prefix).")],
    features: Annotated[Optional[str], typer.Option("--features", "-f", help="Feature set(s) to apply the run to (same classes and dim; comma-separated to concatenate). Default: the run's own.")] = None,
    split: Annotated[str, typer.Option(help="Split of the feature set to predict.")] = "test",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for probabilities-<split>.npz and submission.csv.")] = Path("predictions"),
    fmt: Annotated[Optional[str], typer.Option("--format", help="Submission format: mva or boostcamp. Default: the feature set's layout (CSV -> boostcamp, folders -> mva).", show_default=False)] = None,
    runs: RunsOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Apply a saved run (head, normalisation, temperature) to a feature set: probabilities and a submission."""
    from probes.predict import predict_run

    res = predict_run(run_id, features=features, split=split, out=out_dir, fmt=fmt, runs=runs, cache=cache)
    sub = f" and {res.submission}" if res.submission else " (no submission: the ids were generated at import; use probes submit --sample)"
    out.print(f"wrote {res.probabilities}{sub} ({res.n:,} rows)", highlight=False)


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
def list_runs_cmd(
    runs: RunsOpt = None,
    sort: Annotated[str, typer.Option("--sort", help="score (val/OOF top-1, best first) or time (newest first).")] = "time",
    features: Annotated[Optional[str], typer.Option("--features", "-f", help="Only runs whose feature sets' encoder or key contains this.", show_default=False)] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Only runs on a dataset whose name contains this.", show_default=False)] = None,
) -> None:
    """Table of saved runs: dataset and key, head, params, seed, selection kind, scores, size; * marks the best per dataset."""
    from featstore.cli.boundary import human_bytes
    from probes.runs import list_runs, run_bytes, run_row

    if sort not in ("score", "time"):
        raise ValueError(f"--sort {sort!r}: expected score or time")
    rows = [run_row(r) for r in list_runs(runs)]
    rows = [r for r in rows if (not features or features in r["features"]) and (not dataset or dataset in r["dataset"])]
    if not rows:
        err.print(f"no runs in {runs or 'runs'}" + (" matching the filters" if features or dataset else ""))
        return
    if sort == "score":
        rows.sort(key=lambda r: -r["score"])
    best = {}
    for r in rows:
        if r["dataset"] not in best or r["score"] > best[r["dataset"]]["score"]:
            best[r["dataset"]] = r
    table = Table()
    for c in ("", "run", "dataset", "features", "head", "params", "seed", "selection", "top-1", "top-5", "size"):
        table.add_column(c, no_wrap=c in ("run", "top-1"))  # the id is what the other commands take; it holds the time
    total = 0
    for r in rows:
        size = run_bytes(r["run"])
        total += size
        table.add_row("*" if best[r["dataset"]] is r else "", r["id"], Path(r["dataset"]).name, r["features"], r["head"], r["params"],
                      str(r["seed"]), r["selection"], f"{r['score']:.2%}", f"{r['top5']:.2%}", human_bytes(size),
                      style="bold green" if best[r["dataset"]] is r else None)
    out.print(table)
    out.print(f"{len(rows)} runs, {human_bytes(total)} in all; * best top-1 per dataset", style="dim", highlight=False)


@probes_app.command("rm")
@boundary
def rm_runs(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run ids (or unique prefixes).")],
    runs: RunsOpt = None,
) -> None:
    """Delete runs (all names are checked before any is deleted)."""
    from featstore.cli.boundary import human_bytes
    from probes.runs import remove_runs

    for run_id, size in remove_runs(run_ids, runs=runs):
        out.print(f"removed {run_id} ({human_bytes(size)})", highlight=False)


@probes_app.command()
@boundary
def evaluate(
    run_ids: Annotated[Optional[list[str]], typer.Argument(metavar="[RUN]...", help="Run ids (or prefixes). Default: the newest run.")] = None,
    runs: RunsOpt = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Also evaluate the runs' ensemble: a weighted mean of their calibrated probabilities, the weights chosen on val (never below its best member there).")] = False,
    plots: Annotated[Optional[Path], typer.Option(help="Folder for the PNGs. Default: the first run's folder.")] = None,
    top: Annotated[int, typer.Option(help="How many confused class pairs to list.")] = 10,
) -> None:
    """Top-1/top-5, macro-F1, calibration, worst classes and confused pairs; confusion and per-class PNGs."""
    from probes.evaluate import evaluate_runs, split_of
    from probes.runs import resolve_run

    chosen = [resolve_run(r, runs=runs) for r in (run_ids or [None])]
    split = split_of(chosen)
    ev = evaluate_runs(chosen, split=split, ensemble=ensemble, plots_dir=plots)
    table = Table(title=f"{split} metrics", title_justify="left")
    for c in ("run", "n", "top-1", "top-5", "macro-F1", "ECE (uncalibrated)", "worst classes"):
        table.add_column(c)
    before = {r.id: r.metrics.get("val_ece_uncalibrated") for r in chosen}
    for name, m in ev.rows.items():
        worst = sorted((a, c) for c, a in m["per_class_acc"].items() if a is not None)[:3]
        raw = f" ({before[name]:.3f})" if before.get(name) is not None else ""
        table.add_row(name, str(m["n"]), f"{m['top1']:.2%}", f"{m['top5']:.2%}", f"{m['macro_f1']:.3f}",
                      f"{m['ece']:.3f}{raw}", ", ".join(f"{c} {a:.0%}" for a, c in worst))
    out.print(table)
    if ev.weights:
        out.print("ensemble weights (chosen on val): " + ", ".join(f"{k} {w:.2f}" for k, w in ev.weights.items()),
                  highlight=False)
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
    fmt: Annotated[Optional[str], typer.Option("--format", help="Without --sample: mva (Id,Category; Id = test file stem) or boostcamp (ID,image_path,target in test.csv order, its exact image_path strings). Default: the feature set's layout (CSV layout -> boostcamp, folders -> mva).", show_default=False)] = None,
    sample: Annotated[Optional[Path], typer.Option(help="The competition's sample CSV, used as the template: its header, id column and id style (stem, file name, path or integer), other columns and row order are kept, only the label column is filled in. Refused, naming the difference, when its ids are not the test images.")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Write categories as class 'index' or class 'names'. Default: what the sample's label column holds when it can tell (class names that are not numbers -> names), else index.", show_default=False)] = None,
    ensemble: Annotated[Optional[list[str]], typer.Option("--ensemble", help="Ensemble these runs instead (repeat the option per run): weighted mean of calibrated probabilities, weights chosen on val.")] = None,
    runs: RunsOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Write the competition CSV from a run's (or an ensemble's) test predictions, validated before writing."""
    from probes.predict import submission_for

    sub = submission_for(run_id, ensemble=ensemble, out=out_path, fmt=fmt, sample=sample, runs=runs, cache=cache,
                         labels=labels)
    for run, kind, score in sub.runs:
        err.print(f"using run {run}: {'OOF' if 'fold' in kind else 'val'} top-1 {score:.2%} ({kind or 'val'})",
                  highlight=False)
    for note in sub.notes:
        err.print(f"note: {note}", highlight=False)
    out.print(f"wrote {sub.path} ({sub.n:,} rows, {sub.what})", highlight=False)


from probes.cli.fewshot import register_fewshot  # noqa: E402  (the few-shot protocol, issue 11)
register_fewshot(probes_app)
