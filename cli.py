"""Command lines `featstore` and `probes`: each command parses, calls one library function, renders."""

from __future__ import annotations

import os
import sys
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

_WIDE = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120  # piped output: wide tables, not 80 columns
out = Console(width=_WIDE)  # results
err = Console(stderr=True, width=_WIDE)  # progress, messages
DEBUG_VAR = "FEATSTORE_DEBUG"

featstore_app = typer.Typer(help="Embed an image dataset once with a frozen encoder; keep the vectors in an HDF5 store.",
                            no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
probes_app = typer.Typer(help="Train, compare, evaluate and submit classifier heads on cached features.",
                         no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

# Options shared by several commands.
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="Feature store root. Default: $FEATSTORE_CACHE or ./cache.", show_default=False)]


def boundary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The one place library errors become a single line on stderr and exit code 1."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from featstore.errors import FeatstoreError

        try:
            return fn(*args, **kwargs)
        except (FeatstoreError, ValueError, FileNotFoundError, PermissionError) as e:
            if os.environ.get(DEBUG_VAR):
                raise
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)  # one line; traceback: FEATSTORE_DEBUG=1
            raise typer.Exit(1) from None
        except typer.Exit:
            raise
        except Exception as e:  # a bug: still one line by default, the traceback on demand
            if os.environ.get(DEBUG_VAR):
                raise
            err.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {e} (a bug; {DEBUG_VAR}=1 shows the traceback)",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: finished shards are kept; rerun the same command to resume")
            raise typer.Exit(130) from None

    return run


class RateColumn(ProgressColumn):
    """images/s over the whole task (rich's speed column is for bytes)."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} img/s" if speed else "- img/s", style="cyan")


class RichProgress:
    """extract's Progress protocol drawn with rich, one bar per split, on stderr.

    `label` (e.g. "rank 0/4") tags each bar of a worker that does only a slice of the split.
    """

    def __init__(self, label: str = "") -> None:
        self.bar = Progress(TextColumn("[bold]{task.description:>6}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
        self.task: Any = None
        self.label = label

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, split: str, total: int) -> None:
        self.task = self.bar.add_task(f"{split} ({self.label})" if self.label else split, total=total)

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def end(self) -> None:
        self.bar.refresh()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# ----------------------------------------------------------------------------- featstore commands


# Options that name a feature set: extract and merge must spell them the same way to find the same set.
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Encoder name (see `featstore models`), timm:<model> or open_clip:<arch>:<tag>.")]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder: train_images/ val_images/ test_images/ (or train/ val/ test/), or train.csv + test.csv.")]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="Local weights: safetensors or a weights-only .pth/.bin state dict of this model (offline use).")]
RandomWeightsOpt = Annotated[bool, typer.Option("--random-weights", help="Random-initialised model (benchmarks only); recorded in the manifest.")]
SplitsOpt = Annotated[Optional[str], typer.Option(help="Comma-separated splits to extract, e.g. train,val. Default: every split found.")]
NameOpt = Annotated[Optional[str], typer.Option(help="Dataset name in the store key. Default: the --data folder's resolved path.")]
WaitOpt = Annotated[bool, typer.Option(help="If another process is writing this feature set, wait for it instead of exiting.")]


@featstore_app.command()
@boundary
def extract(
    model: ModelOpt,
    data: DataOpt,
    cache: CacheOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeightsOpt = False,
    splits: SplitsOpt = None,
    name: NameOpt = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if available; under torchrun cuda:LOCAL_RANK), cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (fp16 autocast on CUDA, fp32 on CPU), fp32, fp16 or bf16. Part of the key.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")] = 64,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=0, help="Decode worker processes. Default: all cores (up to 8) on CUDA, half of them on CPU.")] = None,
    shard_rows: Annotated[int, typer.Option(min=1, help="Rows per shard file; a killed run loses at most the shard in progress.")] = 4096,
    shard: Annotated[Optional[str], typer.Option(help="Run as worker I of N (slurm arrays, shell loops): embed items I, I+N, ... of each split, then `featstore merge`. Under torchrun (`torchrun --nproc-per-node N -m featstore extract ...`) ranks split the work by themselves.", metavar="I/N")] = None,
    wait: WaitOpt = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the encoder (GPU, long runs).")] = False,
) -> None:
    """Embed every image of every split once; rerunning computes only new or changed images."""
    from contextlib import nullcontext

    from featstore.distributed import resolve_rank
    from featstore.extract import ExtractOptions, extract as run_extract

    opts = ExtractOptions(device=device, precision=precision, batch_size=batch_size, workers=workers,
                          shard_rows=shard_rows, wait=wait, compile=compile)
    rank = resolve_rank(shard)
    drawn = rank.lead or not rank.torchrun  # torchrun ranks share one terminal: only rank 0 draws
    label = "" if rank.alone else f"{'rank' if rank.torchrun else 'shard'} {rank.label}"
    with RichProgress(label) if drawn else nullcontext() as progress:
        report = run_extract(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                             splits=splits.split(",") if splits else None, name=name, options=opts, progress=progress,
                             rank=rank)
    if not drawn:
        return
    render_extract_report(report)
    names = dict(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights, splits=splits,
                 name=name, precision=report.precision)
    if report.merge is not None:
        render_merge_issues(report.merge, _set_command("extract", **names))
    elif not rank.alone:
        err.print(f"shard {rank.label} done; when every shard has finished: {_set_command('merge', **names)}",
                  highlight=False, soft_wrap=True)


def _set_command(command: str, *, model: str, data: Path, cache: Optional[Path], weights: Optional[Path],
                 random_weights: bool, splits: Optional[str], name: Optional[str], precision: str) -> str:
    """The featstore command line that names the same feature set (for hints)."""
    import shlex

    args = ["featstore", command, "--model", model, "--data", str(data)]
    for flag, value in (("--cache", cache), ("--weights", weights), ("--splits", splits), ("--name", name)):
        if value:
            args += [flag, str(value)]
    args += ["--random-weights"] if random_weights else []
    return shlex.join([*args, "--precision", precision])


@featstore_app.command()
@boundary
def merge(
    model: ModelOpt,
    data: DataOpt,
    cache: CacheOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeightsOpt = False,
    splits: SplitsOpt = None,
    name: NameOpt = None,
    precision: Annotated[str, typer.Option(help="Precision the workers ran at. auto: the one whose shards exist.")] = "auto",
    wait: WaitOpt = False,
) -> None:
    """Assemble a feature set from the shards of `featstore extract --shard I/N` workers; computes no vector."""
    from featstore.extract import merge as run_merge

    report = run_merge(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                       splits=splits.split(",") if splits else None, name=name, precision=precision, wait=wait)
    table = Table(title=f"{report.encoder}  {report.key}  (merged)", title_justify="left")
    for col in ("split", "images", "stored", "failed", "missing"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for r in report.splits:
        table.add_row(r.split, f"{r.images:,}", f"{r.stored:,}", f"{r.failed:,}", f"{r.missing:,}")
    out.print(table)
    out.print(f"store: {report.folder}", highlight=False)
    cmd = _set_command("extract", model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                       splits=splits, name=name, precision=report.precision)
    render_merge_issues(report, cmd)


def render_merge_issues(report: Any, extract_cmd: str) -> None:
    """Workers still running, then images with no vector: one line, exit 1 (the set is not complete)."""
    if report.running:
        err.print(f"[yellow]{len(report.running)} workers still running[/] ({', '.join(report.running)}): "
                  "merge again when they finish", highlight=False, soft_wrap=True)
    if report.missing:
        first = report.missing[0]
        err.print(f"[bold red]error:[/] {len(report.missing):,} images have no stored vector yet "
                  f"(e.g. {first['split']}/{first['id']}): finish the --shard workers that did not complete, "
                  f"or run `{extract_cmd}` to compute them", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def render_extract_report(report: Any) -> None:
    title = f"{report.encoder}  {report.key}"
    if not report.rank.alone:
        title += f"  ({report.rank.count} torchrun ranks)" if report.merge else f"  (shard {report.rank.label})"
    table = Table(title=title, title_justify="left")
    for col in ("split", "images", "extracted", "reused", "failed", "seconds", "images/s"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for r in report.splits:
        table.add_row(r.split, f"{r.images:,}", f"{r.extracted:,}", f"{r.reused:,}", f"{r.failed:,}",
                      f"{r.seconds:.1f}", f"{r.rate:,.1f}" if r.extracted else "-")
    out.print(table)
    out.print(f"store: {report.folder}  ({human_bytes(report.store_bytes)})", highlight=False)
    if report.failures:
        err.print(f"[yellow]{len(report.failures)} unreadable images skipped[/] (listed in the manifest):")
        for f in report.failures[:20]:
            err.print(f"  {f['split']}/{f['id']}: {f['reason']}", highlight=False)
        if len(report.failures) > 20:
            err.print(f"  ... and {len(report.failures) - 20} more (featstore info {report.key})")


@featstore_app.command()
@boundary
def models(pattern: Annotated[Optional[str], typer.Argument(help="Shell-style filter, e.g. '*clip*'.")] = None) -> None:
    """List the registered encoders: dimension, input size, preprocessing and where the weights come from."""
    from featstore.encoders import list_specs

    table = Table()
    for col in ("name", "backend / model", "dim", "input", "resize", "weights"):
        table.add_column(col)
    for s in list_specs(pattern):
        model = f"{s.backend} {s.model_id}" + (f".{s.pretrained}" if s.pretrained and s.backend == "timm" else
                                               f" / {s.pretrained}" if s.pretrained else "")
        resize = s.crop_mode + (f" {s.crop_pct:.3g}" if s.crop_mode == "center" and s.crop_pct != 1 else "")
        table.add_row(s.name, model, str(s.dim), s.input_desc, f"{resize}, {s.interpolation}", s.weights_hint)
    out.print(table)
    out.print("Also: timm:<model> and open_clip:<arch>:<tag> for any model of those libraries.", style="dim")


@featstore_app.command("ls")
@boundary
def ls_sets(cache: CacheOpt = None) -> None:
    """Table of the feature sets in the store: encoder, key, splits and counts, dim, size, failures."""
    from featstore.store import list_feature_sets

    sets = list_feature_sets(cache)
    if not sets:
        err.print(f"no feature sets in {cache or os.environ.get('FEATSTORE_CACHE', 'cache')}")
        return
    table = Table()
    for col in ("encoder", "key", "splits", "dim", "size", "failures", "updated", "dataset"):
        table.add_column(col)
    for s in sets:
        counts = ", ".join(f"{sp} {s.count(sp):,}" + (f" ({s.missing(sp):,} missing)" if s.missing(sp) else "")
                           for sp in s.splits) or "(incomplete)"
        table.add_row(s.encoder, s.key, counts, str(s.dim), human_bytes(s.size_bytes()), str(len(s.failures())),
                      s.manifest.get("updated", "")[:19], s.dataset.get("name", ""))
    out.print(table)


@featstore_app.command()
@boundary
def info(ref: Annotated[str, typer.Argument(help="Feature set key (or prefix), encoder/key, or encoder name.")],
         cache: CacheOpt = None) -> None:
    """Everything about one feature set: key fields, splits, classes, failures, run history."""
    from featstore.store import open_feature_set

    fs = open_feature_set(ref, cache=cache)
    m = fs.manifest
    out.print(f"[bold]{fs.encoder}[/]  key {fs.key}  ({fs.folder})")
    out.print(f"dim {fs.dim}, {m.get('dtype', 'float16')}, views {m.get('views', 1)}, "
              f"precision {m['key_fields']['precision']}, weights {m['key_fields']['weights']}"
              + ("  [red](random weights)[/]" if m.get("random_weights") else ""))
    out.print(f"dataset {fs.dataset.get('name')} ({fs.dataset.get('layout')}), {len(fs.classes)} classes: "
              f"{', '.join(fs.classes[:8])}{' ...' if len(fs.classes) > 8 else ''}", highlight=False)
    table = Table()
    for col in ("split", "images", "shards", "failures", "missing"):
        table.add_column(col)
    for sp, v in m["splits"].items():
        table.add_row(sp, f"{v.get('count', 0):,}", str(len(v.get("shards", []))), str(len(v.get("failures", []))),
                      f"{fs.missing(sp):,}")
    out.print(table)
    if any(fs.missing(sp) for sp in m["splits"]):
        err.print("[yellow]warning:[/] some images have no vector yet (a worker that has not run or was killed): "
                  "rerun those workers (or a plain featstore extract), then featstore merge", highlight=False)
    for f in fs.failures():
        out.print(f"  failed {f['split']}/{f['id']}: {f['reason']}", highlight=False)
    from featstore.leaks import shared_images

    for (a, b), pairs in shared_images(fs).items():
        eg = pairs[0]
        err.print(f"[yellow]warning:[/] {len(pairs)} {b} images are byte-identical to {a} images "
                  f"(e.g. {a}/{eg[0]} = {b}/{eg[1]}): {b} accuracy will be optimistic", highlight=False)
    for h in m.get("history", [])[-5:]:
        out.print(f"  run {h.get('started')} -> {h.get('finished')} on {h.get('device')}", style="dim")


@featstore_app.command("demo-data")
@boundary
def demo_data(folder: Annotated[Path, typer.Argument(help="Where to write the MVA-layout folder.")] = Path("data_demo")) -> None:
    """Write scikit-learn's bundled handwritten digits as an image-folder dataset (offline demo data)."""
    from featstore.demo import write_digits

    root = write_digits(folder)
    n = sum(1 for p in root.rglob("*") if p.is_file())
    out.print(f"wrote {n:,} images to {root}/ (train_images/, val_images/, test_images/)", highlight=False)


# ----------------------------------------------------------------------------- probes commands

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
    memory_gb: Annotated[Optional[float], typer.Option("--memory-gb", help="Memory budget in GB for the fit's data: train features in float32 plus the head's working copies (logistic: ~8 x dim + 16 x classes bytes per train row). Above it the logistic head streams fp16 blocks from the store (peak ~1 GB whatever the size) instead of loading them. Default: $PROBES_MEMORY_GB or 4.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Head parameter NAME=VALUE, repeatable (e.g. -p C=0.1, -p hidden=1024, -p epochs=30).")] = None,
) -> None:
    """Train a head on cached features, select it on val, save a run (runs/<id>/)."""
    from probes.train import FitRequest, fit_run

    req = FitRequest(features=tuple(f.strip() for f in features.split(",") if f.strip()), head=head, sweep=sweep,
                     final=final, cv=cv, seed=seed, normalize=normalize, device=device, params=_parse_params(param or []),
                     memory_budget_gb=memory_gb)
    with err.status(f"fitting {head} on {features} ..."):
        res = fit_run(req, cache=cache, runs=runs)
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


@featstore_app.command("import")
@boundary
def import_cmd(
    name: Annotated[str, typer.Argument(help="Name of the new feature set (used as its encoder name in the store).")],
    train: Annotated[Path, typer.Option(help=".npz (features, labels, ids[, classes]), .npy (features) or a .pt dict.")],
    val: Annotated[Optional[Path], typer.Option(help="Same for the val split.")] = None,
    test: Annotated[Optional[Path], typer.Option(help="Same for the test split (labels optional).")] = None,
    classes: Annotated[Optional[Path], typer.Option(help="Text file with one class name per line, in label order.")] = None,
    cache: CacheOpt = None,
) -> None:
    """Bring features extracted elsewhere into the store, so the probes can use them."""
    from featstore.importer import import_arrays

    names = [line.strip() for line in classes.read_text().splitlines() if line.strip()] if classes else None
    folder = import_arrays(name, {"train": train, "val": val, "test": test}, cache=cache, classes=names)
    out.print(f"imported {name} -> {folder}", highlight=False)
