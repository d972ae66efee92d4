"""`featstore`: extract, merge, models, ls, info, demo-data, import; each parses, calls one library function, renders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cli.audit_cmds import audit, render_audit_line
from cli.common import CacheOpt, RichProgress, boundary, err, human_bytes, out

featstore_app = typer.Typer(help="Embed an image dataset once with a frozen encoder; keep the vectors in an HDF5 store.",
                            no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
featstore_app.command()(audit)


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
    from featstore.extract import ExtractOptions
    from featstore.extract import extract as run_extract

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
    if rank.alone:
        render_audit_line(report.folder)
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
