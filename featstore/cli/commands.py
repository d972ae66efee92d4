"""`featstore`: extract, merge, models, ls, info, demo-data, import; each parses, calls one library function, renders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from featstore.cli.audit import audit, render_audit_line
from featstore.cli.boundary import CacheOpt, boundary, err, human_bytes, out
from featstore.cli.progress import RichProgress

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
OutputsOpt = Annotated[Optional[str], typer.Option(help="Comma-separated outputs, all from one forward pass, each its own feature set (ENCODER:OUTPUT), e.g. pre_logits,cls,patch_mean,cls_last4 (timm ViTs) or embed,pre_proj (open_clip). Default: the entry's first output (today's vector). See `featstore models`.")]
ViewsOpt = Annotated[Optional[str], typer.Option(help="Comma-separated views: orig,hflip stores the horizontal flip too, as its own feature set (ENCODER[:OUTPUT]@hflip). Default: orig.")]


def _csv(text: Optional[str]) -> Optional[list[str]]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


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
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=0, help="Decode worker processes. Default: all cores (up to 8) on CUDA, 0 on CPU (batches decode threaded between forward passes).")] = None,
    shard_rows: Annotated[int, typer.Option(min=1, help="Rows per shard file; a killed run loses at most the shard in progress.")] = 4096,
    flush_seconds: Annotated[float, typer.Option(min=0.0, help="Also publish the shard in progress when it is this old: a kill (or SIGTERM) loses at most this much work. Small shards are compacted when a split completes.")] = 60.0,
    shard: Annotated[Optional[str], typer.Option(help="Run as worker I of N (slurm arrays, shell loops): embed items I, I+N, ... of each split, then `featstore merge`. Under torchrun (`torchrun --nproc-per-node N -m featstore extract ...`) ranks split the work by themselves.", metavar="I/N")] = None,
    wait: WaitOpt = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the encoder (GPU, long runs). Part of the key.")] = False,
    retry_precision: Annotated[Optional[str], typer.Option(help="Recompute images whose output is NaN/Inf at --precision (e.g. an fp16 overflow) at this one: fp32 or bf16. A rerun with it computes just those.")] = None,
    outputs: OutputsOpt = None,
    views: ViewsOpt = None,
) -> None:
    """Embed every image of every split once; rerunning computes only new or changed images."""
    from contextlib import nullcontext

    from featstore.uptodate import request_stamp, up_to_date

    if not shard and "RANK" not in os.environ:  # a no-op rerun answers before torch is imported
        stamp = request_stamp(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                              splits=splits.split(",") if splits else None, name=name, precision=precision,
                              compile=compile, outputs=_csv(outputs), views=_csv(views))
        if done := up_to_date(stamp, data=data, splits=splits.split(",") if splits else None):
            out.print(f"up to date: all {done[1]:,} images already stored in {', '.join(map(str, done[0]))}",
                      highlight=False, soft_wrap=True)
            return

    from featstore.distributed import resolve_rank
    from featstore.extract import ExtractOptions
    from featstore.extract import extract as run_extract

    opts = ExtractOptions(device=device, precision=precision, batch_size=batch_size, workers=workers,
                          shard_rows=shard_rows, flush_s=flush_seconds, wait=wait, compile=compile,
                          retry_precision=retry_precision)
    rank = resolve_rank(shard)
    drawn = rank.lead or not rank.torchrun  # torchrun ranks share one terminal: only rank 0 draws
    label = "" if rank.alone else f"{'rank' if rank.torchrun else 'shard'} {rank.label}"
    with RichProgress(label) if drawn else nullcontext() as progress:
        report = run_extract(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                             splits=splits.split(",") if splits else None, name=name, options=opts, progress=progress,
                             rank=rank, outputs=_csv(outputs), views=_csv(views))
    if not drawn:
        return
    render_extract_report(report)
    if rank.alone:
        render_audit_line(report.folder)
    names = dict(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights, splits=splits,
                 name=name, precision=report.precision, outputs=outputs, views=views)
    if report.merge is not None:
        render_merge_issues(report.merge, _set_command("extract", **names))
    elif not rank.alone:
        err.print(f"shard {rank.label} done; when every shard has finished: {_set_command('merge', **names)}",
                  highlight=False, soft_wrap=True)


def _set_command(command: str, *, model: str, data: Path, cache: Optional[Path], weights: Optional[Path],
                 random_weights: bool, splits: Optional[str], name: Optional[str], precision: str,
                 outputs: Optional[str] = None, views: Optional[str] = None) -> str:
    """The featstore command line that names the same feature set (for hints)."""
    import shlex

    args = ["featstore", command, "--model", model, "--data", str(data)]
    for flag, value in (("--cache", cache), ("--weights", weights), ("--splits", splits), ("--name", name),
                        ("--outputs", outputs), ("--views", views)):
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
    outputs: OutputsOpt = None,
    views: ViewsOpt = None,
) -> None:
    """Assemble a feature set from the shards of `featstore extract --shard I/N` workers; computes no vector."""
    from featstore.extract import merge as run_merge

    report = run_merge(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                       splits=splits.split(",") if splits else None, name=name, precision=precision, wait=wait,
                       outputs=_csv(outputs), views=_csv(views))
    table = Table(title=f"{report.encoder}  {report.key}  (merged)", title_justify="left")
    for col in ("split", "images", "stored", "failed", "missing"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for r in report.splits:
        table.add_row(r.split, f"{r.images:,}", f"{r.stored:,}", f"{r.failed:,}", f"{r.missing:,}")
    out.print(table)
    out.print(f"store: {report.folder}", highlight=False)
    cmd = _set_command("extract", model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                       splits=splits, name=name, precision=report.precision, outputs=outputs, views=views)
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
    if len(report.sets) > 1:
        names = [f"{report.encoder}:{o}" + (f"@{v}" if v != "orig" else "") + f" ({k})" for o, v, k in report.sets]
        out.print(f"{len(report.sets)} feature sets from one pass: {', '.join(names)}", highlight=False, soft_wrap=True)
    for note in report.repairs:
        err.print(f"[yellow]repaired:[/] {note}", highlight=False, soft_wrap=True)
    if report.hidden:
        err.print(f"skipped {len(report.hidden)} hidden folders: {', '.join(report.hidden[:5])}"
                  + (" ..." if len(report.hidden) > 5 else ""), highlight=False, soft_wrap=True)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if report.failures:
        err.print(f"[yellow]{len(report.failures)} images skipped[/] (listed in the manifest):")
        for f in report.failures[:20]:
            err.print(f"  {f['split']}/{f['id']}: {f['reason']}", highlight=False)
        if len(report.failures) > 20:
            err.print(f"  ... and {len(report.failures) - 20} more (featstore info {report.key})")


@featstore_app.command()
@boundary
def models(pattern: Annotated[Optional[str], typer.Argument(help="Filter: a substring of the name (clip), or a shell-style glob ('*clip*'); case-insensitive.")] = None) -> None:
    """List the registered encoders: dimension, input size, preprocessing, where the weights come from and whether they are in the local hub cache."""
    from featstore.encoders import list_specs
    from featstore.encoders.hubcheck import cached_state

    table = Table()
    for col in ("name", "backend / model", "dim", "input", "resize", "outputs", "text", "labels seen", "weights", "local"):
        table.add_column(col)
    specs = list_specs(pattern)
    for s in specs:
        model = f"{s.backend} {s.model_id}" + (f".{s.pretrained}" if s.pretrained and s.backend == "timm" else
                                               f" / {s.pretrained}" if s.pretrained else "")
        resize = s.crop_mode + (f" {s.crop_pct:.3g}" if s.crop_mode == "center" and s.crop_pct != 1 else "")
        labels = f"[yellow]ImageNet-{s.imagenet_labels[2:]}[/]" if s.imagenet_labels else "none"
        table.add_row(s.name, model, str(s.dim), s.input_desc, f"{resize}, {s.interpolation}",
                      ", ".join(o for o, _ in s.outputs), "yes" if s.text else "", labels, s.weights_hint, cached_state(s))
    out.print(table)
    for s in specs:  # provenance: what the weights were trained on, label fine-tuning included
        out.print(f"  {s.name}: {s.trained_on}", style="dim", highlight=False)
    out.print("Also: timm:<model> and open_clip:<arch>:<tag> for any model of those libraries.", style="dim")


@featstore_app.command("ls")
@boundary
def ls_sets(cache: CacheOpt = None) -> None:
    """Table of the feature sets in the store: encoder, key, splits and counts, dim, size, failures."""
    from featstore.store import list_feature_sets
    from featstore.store.catalog import list_damaged, set_name
    from featstore.store.textset import list_text_sets

    sets, texts, damaged = list_feature_sets(cache), list_text_sets(cache), list_damaged(cache)
    if texts:
        _text_table(texts)
    for folder, reason in damaged:
        err.print(f"[bold red]damaged:[/] {folder.parent.name}/{folder.name}: {reason} "
                  f"(repair: featstore verify {folder.name}{_cache_arg(cache)} --repair)", highlight=False, soft_wrap=True)
    if not sets:
        if not texts and not damaged:
            err.print(f"no feature sets in {cache or os.environ.get('FEATSTORE_CACHE') or 'cache'}")
        return
    table = Table()
    for col in ("encoder", "key", "splits", "dim", "size", "failures", "updated", "dataset"):
        table.add_column(col)
    for s in sets:
        counts = ", ".join(f"{sp} {s.count(sp):,}" + (f" ({s.missing(sp):,} missing)" if s.missing(sp) else "")
                           for sp in s.splits) or "(incomplete)"
        table.add_row(set_name(s), s.key, counts, str(s.dim), human_bytes(s.size_bytes()), str(len(s.failures())),
                      s.manifest.get("updated", "")[:19], s.dataset.get("name", ""))
    out.print(table)
    total = sum(s.size_bytes() for s in sets)
    out.print(f"{len(sets)} feature sets, {human_bytes(total)} in all", style="dim", highlight=False)


@featstore_app.command("rm")
@boundary
def rm_set(
    refs: Annotated[list[str], typer.Argument(metavar="SET...", help="Feature set key (or prefix), encoder/key, or name.")],
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset folder (or name) a name refers to when several datasets have one.", show_default=False)] = None,
    cache: CacheOpt = None,
) -> None:
    """Delete feature sets (runs fitted on them can still submit: they keep their test predictions)."""
    from featstore.housekeeping import remove_set
    from featstore.store.catalog import set_name

    for ref in refs:
        fs, size = remove_set(ref, cache=cache, dataset=data)
        out.print(f"removed {set_name(fs)} {fs.key} (dataset {fs.dataset.get('name', '?')}, {human_bytes(size)})",
                  highlight=False)


@featstore_app.command()
@boundary
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed, remove nothing.")] = False,
    unused: Annotated[bool, typer.Option("--unused", help="Also remove every feature set that no run in --runs uses.")] = False,
    runs: Annotated[Optional[Path], typer.Option("--runs", help="Runs folder for --unused. Default: $PROBES_RUNS or ./runs.", show_default=False)] = None,
    cache: CacheOpt = None,
) -> None:
    """Remove the store's litter: temp shards of killed writers, quarantined shards, and with --unused the sets no run uses."""
    from featstore.housekeeping import collect_garbage, set_keys_in_use

    keep = set_keys_in_use(runs) if unused else None
    found = collect_garbage(cache=cache, keep_keys=keep, dry_run=dry_run)
    for path, size, why in found.items:
        out.print(f"{'would remove' if dry_run else 'removed'} {path} ({human_bytes(size)}): {why}", highlight=False)
    for path in found.busy:
        err.print(f"[yellow]kept[/] {path}: being written right now (an extraction holds it)", highlight=False)
    out.print(f"{'would free' if dry_run else 'freed'} {human_bytes(found.bytes)} ({len(found.items)} items)", highlight=False)


def _text_table(texts: list[Any]) -> None:
    table = Table(title="text sets (class-name embeddings)", title_justify="left")
    for col in ("encoder", "key", "classes", "templates", "dim", "logit scale", "updated"):
        table.add_column(col)
    for t in texts:
        eg = ", ".join(t.names[:3]) + (" ..." if len(t.names) > 3 else "")
        table.add_row(t.encoder, t.key, f"{len(t.classes)} ({eg})", str(len(t.templates)), str(t.embeddings.shape[-1]),
                      f"{t.logit_scale:g}", t.updated[:19])
    out.print(table)


@featstore_app.command()
@boundary
def info(ref: Annotated[str, typer.Argument(help="Feature set key (or prefix), encoder/key, or encoder name.")],
         cache: CacheOpt = None) -> None:
    """Everything about one feature set: key fields, splits, classes, failures, run history."""
    from featstore.store import open_feature_set

    fs = open_feature_set(ref, cache=cache)
    m = fs.manifest
    from featstore.provenance import label_leak_warning
    from featstore.store.catalog import set_name

    out.print(f"[bold]{set_name(fs)}[/]  key {fs.key}  ({fs.folder})", highlight=False)
    out.print(f"dim {fs.dim}, {m.get('dtype', 'float16')}, views {m.get('views', 1)}, "
              f"precision {m['key_fields'].get('precision', 'as imported')}, "
              f"weights {m['key_fields'].get('weights', m.get('weights_source', '?'))}"
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
    warning = label_leak_warning(fs.encoder, fs.classes)
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
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
    train: Annotated[Optional[Path], typer.Option(help=".npz (features, labels, ids[, classes]), .npy (features), a .pt dict or a torch.save((features, labels[, ids])) tuple. Aliases: features/feats/embeddings/x, labels/label/targets/target/y, ids/paths/filenames. Ids must be the extracted sets' ids (path under the split folder, e.g. cat/001.jpg) to concatenate with them; without ids rows are numbered and a submission needs --sample.")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Same for the val split.")] = None,
    test: Annotated[Optional[Path], typer.Option(help="Same for the test split (labels optional).")] = None,
    classes: Annotated[Optional[Path], typer.Option(help="Text file with one class name per line, in label order.")] = None,
    cache: CacheOpt = None,
    text: Annotated[Optional[Path], typer.Option(help="Instead of image features: class-name embeddings, .npz with classes [K], embeddings [K, D] or [K, T, D], optional templates [T] and logit_scale.")] = None,
) -> None:
    """Bring features extracted elsewhere into the store, so the probes can use them."""
    from featstore.importer import import_arrays

    if text is not None:
        from featstore.text_import import import_text

        out.print(f"imported text set {name} -> {import_text(name, text, cache=cache)}", highlight=False)
        return
    if train is None:
        raise typer.BadParameter("give --train (image features) or --text (class-name embeddings)")

    names = [line.strip() for line in classes.read_text().splitlines() if line.strip()] if classes else None
    folder = import_arrays(name, {"train": train, "val": val, "test": test}, cache=cache, classes=names,
                           note=lambda line: err.print(line, highlight=False))
    out.print(f"imported {name} -> {folder}", highlight=False)
    render_audit_line(Path(folder))  # as after extract: the set's audit is computed once and cached with it


@featstore_app.command()
@boundary
def text(
    model: ModelOpt,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset folder: its classes, in the dataset's order (WordNet-id folders become readable names).")] = None,
    classes: Annotated[Optional[Path], typer.Option(help="Instead of --data: one class per line, or FOLDER,NAME lines.")] = None,
    names: Annotated[Optional[Path], typer.Option(help="Override the readable names: FOLDER,NAME lines, or one name per class in class order.")] = None,
    templates: Annotated[str, typer.Option(help="openai (OpenAI's 80 ImageNet prompts, as shipped by open_clip), simple, or a file with one template per line holding {}.")] = "openai",
    cache: CacheOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeightsOpt = False,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda or cuda:N. Always fp32.")] = "auto",
) -> None:
    """Embed each class name with the model's own tokenizer and text tower over prompt templates; stored as a text set."""
    from featstore.text import embed_class_names

    with err.status(f"embedding class names with {model} ..."):
        ts = embed_class_names(model=model, data=data, classes_file=classes, names_file=names, templates=templates,
                               cache=cache, weights=weights, random_weights=random_weights, device=device)
    eg = ", ".join(f"{c} -> {n!r}" for c, n in list(zip(ts.classes, ts.names))[:3])
    out.print(f"text set {ts.encoder}  key {ts.key}: {len(ts.classes)} classes x {len(ts.templates)} templates, "
              f"dim {ts.embeddings.shape[-1]}, logit scale {ts.logit_scale:g}  ({ts.folder})", highlight=False)
    out.print(f"names: {eg}{' ...' if len(ts.classes) > 3 else ''}", highlight=False)


def _cache_arg(cache: Optional[Path]) -> str:
    import shlex

    return f" --cache {shlex.quote(str(cache))}" if cache else ""


@featstore_app.command()
@boundary
def verify(
    ref: Annotated[Optional[str], typer.Argument(help="Feature set key (or prefix), encoder/key, or encoder name. Default: every set in the store.")] = None,
    cache: CacheOpt = None,
    images: Annotated[bool, typer.Option("--images", help="Also re-hash every image and compare it with the sha1 stored for it.")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="Quarantine damaged shards, rebuild the manifest and indexes from the intact shards.")] = False,
) -> None:
    """Read every shard through its checksums; check indexes, manifest counts and dims. Exit 1 naming every problem."""
    from featstore.store import list_feature_sets
    from featstore.store.catalog import find_set_folder, list_damaged
    from featstore.verify import verify_set

    if ref:
        folders = [find_set_folder(ref, cache=cache)]
    else:
        folders = sorted({s.folder for s in list_feature_sets(cache)} | {f for f, _ in list_damaged(cache)})
    bad = 0
    for folder in folders:
        rep = verify_set(folder, images=images, repair=repair)
        name = f"{folder.parent.name}/{folder.name}"
        for note in rep.repaired:
            err.print(f"[yellow]repaired:[/] {name}: {note}", highlight=False, soft_wrap=True)
        for note in rep.notes:
            err.print(f"[dim]note:[/] {name}: {note}", highlight=False, soft_wrap=True)
        for problem in rep.problems:
            err.print(f"[bold red]problem:[/] {name}: {problem}", highlight=False, soft_wrap=True)
        if rep.sound:
            out.print(f"ok {name}", highlight=False)
        else:
            bad += 1
            fix = f"featstore verify {folder.name}{_cache_arg(cache)} --repair" if not repair else \
                (rep.extract_cmd + _cache_arg(cache) if rep.extract_cmd else "featstore extract with the set's options")
            err.print(f"  fix: {fix}", highlight=False, soft_wrap=True)
    if not folders:
        err.print(f"no feature sets in {cache or os.environ.get('FEATSTORE_CACHE') or 'cache'}")
    if bad:
        raise typer.Exit(1)


@featstore_app.command()
@boundary
def compact(
    ref: Annotated[str, typer.Argument(help="Feature set key (or prefix), encoder/key, or encoder name.")],
    cache: CacheOpt = None,
    shard_rows: Annotated[int, typer.Option(min=1, help="Rows per compacted shard.")] = 4096,
) -> None:
    """Fold the small shards of a feature set (many short flushes) into few full ones."""
    from featstore.store import open_feature_set
    from featstore.store.compact import compact_set

    fs = open_feature_set(ref, cache=cache)
    for split, before, after in compact_set(fs.folder, shard_rows=shard_rows):
        out.print(f"{split}: {before} shards -> {after}", highlight=False)
