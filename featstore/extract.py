"""featstore extract: every image of every split embedded once, stored by content, resumable."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from featstore.datasets import Dataset, ImageItem, scan_dataset
from featstore.distributed import Rank, barrier, bind_device, computed_by_lead, gather_to_lead, process_group
from featstore.encoders import EncoderSpec, create_encoder, get_spec
from featstore.encoders.outputs import check_outputs
from featstore.encoders.registry import backend_for
from featstore.encoders.weights import check_weights_file, file_identity
from featstore.errors import ExtractionError, ImageDecodeError, StoreError
from featstore.images import sha1_bytes
from featstore.tars import read_item
from featstore.loader import ImageWork, default_workers, make_loader
from featstore.reuse import borrow
from featstore.runtime import Runtime, bad_rows, encode_batch, prepare_model, resolve_runtime
from featstore.signals import terminate_as_interrupt
from featstore.store import FeatureSetWriter, SplitIndex, default_cache, encoder_dirname, feature_key, now_iso
from featstore.store.keys import MANIFEST
from featstore.store.shards import shard_files
from featstore.store.writer import busy_worker_locks
from featstore.setgroup import SetId, WriterGroup
from featstore.uptodate import record, request_stamp
from featstore.views import ORIG, apply_view, parse_views


class Progress(Protocol):
    """What extraction reports while it works; the CLI draws it with rich."""

    def start(self, split: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def end(self) -> None: ...


class _Silent:
    def start(self, split: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def end(self) -> None: ...


@dataclass(frozen=True)
class ExtractOptions:
    """How to run (none of it changes the vectors, so none of it is in the key)."""

    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    shard_rows: int = 4096
    flush_s: float = 60.0  # publish the shard in progress at least this often: a kill loses at most this much work
    wait: bool = False
    compile: bool = False  # in the key all the same: inductor's fusions change rounding (see feature_set_fields)
    retry_precision: str | None = None  # images non-finite at `precision` are recomputed at this one (fp32/bf16)


@dataclass
class SplitReport:
    split: str
    images: int = 0
    extracted: int = 0
    reused: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MergeSplit:
    split: str
    images: int = 0
    stored: int = 0
    failed: int = 0
    missing: int = 0
    hashed: int = 0  # stored by a worker that died before recording it: verified by re-hashing the file


@dataclass
class MergeReport:
    """What a merge found: per split, images in the index, failed, and missing (no vector, no failure)."""

    encoder: str
    key: str
    folder: Path
    splits: list[MergeSplit] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)  # {"split", "id"}
    running: list[str] = field(default_factory=list)  # worker locks still held: those workers are not done
    precision: str = ""


@dataclass
class ExtractReport:
    encoder: str
    key: str
    folder: Path
    splits: list[SplitReport] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    store_bytes: int = 0
    rank: Rank = Rank()
    precision: str = ""
    merge: MergeReport | None = None  # torchrun rank 0: the merge after every rank finished
    sets: list[tuple[str, str, str]] = field(default_factory=list)  # (output, view, key) of every set filled
    repairs: list[str] = field(default_factory=list)  # damage found on opening the set, and what was done
    hidden: tuple[str, ...] = ()  # hidden folders of the dataset that were skipped
    notes: list[str] = field(default_factory=list)  # said once per run: batch size backed off, images recomputed
    batch_size: int = 0  # the batch size that fitted (smaller than asked after an out-of-memory back-off)
    written: dict[str, list[str]] = field(default_factory=dict)  # set key -> shard and part files this worker wrote


def feature_set_fields(spec: EncoderSpec, *, weights: str, precision: str, views: int, dataset: str,
                       output: str | None = None, view: str = ORIG, compile: bool = False) -> dict[str, Any]:
    """The canonical description whose hash is the key: no batch size, workers, device or dataset contents.

    The output and view enter only when they are not the default, so today's sets keep their keys.
    `compile` enters when on: torch.compile's fused kernels round differently from eager ones, and no
    GPU check has yet shown the difference stays within float16 rounding, so the two are kept apart.
    """
    fields = {"encoder": spec.key_fields(), "weights": weights, "precision": precision, "views": views,
              "dataset": dataset}
    if compile:
        fields["compile"] = True
    if output and output != spec.default_output:
        fields["output"] = output
    if view != ORIG:
        fields["view"] = view
    return fields


def weights_identity(spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> str:
    if random_weights:
        return "random-init:seed0"
    if weights is not None:
        return file_identity(check_weights_file(weights))
    return backend_for(spec).weights_identity(spec)


@dataclass(frozen=True)
class SetDefinition:
    """A feature set as the options define it: its key, folder and manifest header, and the scanned dataset."""

    spec: EncoderSpec
    dataset: Dataset
    fields: dict[str, Any]
    key: str
    folder: Path
    header: dict[str, Any]
    output: str = ""
    view: str = ORIG


def define_sets(*, outputs: list[str] | None = None, views: list[str] | None = None,
                **kw: Any) -> list[SetDefinition]:
    """One set per (output, view), all over the same images, view-major (the original view first)."""
    base = define_set(**kw)
    names = tuple(outputs or (base.spec.default_output,))
    check_outputs(base.spec.name, base.spec.output_dims(), names)
    return [_variant(base, o, v) for v in parse_views(",".join(views) if views else None) for o in names]


def _variant(fs: SetDefinition, output: str, view: str) -> SetDefinition:
    """The same images and weights, another output or view: its own key beside the default one."""
    f = fs.fields
    fields = feature_set_fields(fs.spec, weights=f["weights"], precision=f["precision"], views=f["views"],
                                dataset=f["dataset"], output=output, view=view, compile=f.get("compile", False))
    key = feature_key(fields)
    header = {**fs.header, "dim": fs.spec.output_dims()[output], "output": output, "view": view}
    return replace(fs, fields=fields, key=key, folder=fs.folder.parent / key, header=header, output=output, view=view)


def define_set(*, model: str, data: str | Path, cache: str | Path | None, weights: Path | None,
               random_weights: bool, splits: list[str] | None, name: str | None, precision: str,
               compile: bool = False, rank: Rank = Rank()) -> SetDefinition:
    """Everything that names the feature set; `precision` is already resolved (fp32/fp16/bf16).

    Under torchrun rank 0 alone scans the dataset and hashes the weights; the others receive both.
    """
    if weights and random_weights:
        raise ExtractionError("--weights and --random-weights exclude each other")
    spec = get_spec(model)
    output = spec.default_output
    dataset, wid = computed_by_lead(rank, lambda: (
        scan_dataset(data, splits=splits), weights_identity(spec, weights=weights, random_weights=random_weights)))
    fields = feature_set_fields(spec, weights=wid,
                                precision=precision, views=1, dataset=name or str(dataset.root), compile=compile)
    key = feature_key(fields)
    folder = Path(cache or default_cache()) / encoder_dirname(spec.name) / key
    header = {"encoder": spec.name, "dim": spec.output_dims()[output], "views": 1, "output": output, "view": ORIG,
              "dtype": "float16", "classes": list(dataset.classes),
              "random_weights": random_weights, "weights_source": str(weights) if weights else spec.weights_hint,
              "dataset": {"root": str(dataset.root), "name": fields["dataset"], "layout": dataset.layout,
                          "test_order": list(dataset.test_order) if dataset.test_order else None}}
    return SetDefinition(spec, dataset, fields, key, folder, header, output, ORIG)


def extract(*, model: str, data: str | Path, cache: str | Path | None = None, weights: str | Path | None = None,
            random_weights: bool = False, splits: list[str] | None = None, name: str | None = None,
            options: ExtractOptions = ExtractOptions(), progress: Progress | None = None,
            rank: Rank = Rank(), outputs: list[str] | None = None, views: list[str] | None = None) -> ExtractReport:
    """Embed every image of the chosen splits; returns what was done. Raises FeatstoreError subclasses.

    `outputs` / `views`: one feature set each (outputs x views), all from one forward pass per view.
    `rank`: this process is worker I of N and embeds only items I, I+N, ... of each sorted split. Under
    torchrun (rank.torchrun) the ranks then meet at a barrier and rank 0 merges the manifest; with
    `--shard I/N` alone, `merge` (or the next plain extract) does.
    """
    options = replace(options, device=bind_device(rank, options.device))
    rt = resolve_runtime(options.device, options.precision)
    if options.retry_precision:
        retry = resolve_runtime(options.device, options.retry_precision).precision
        if retry == "fp16":
            raise ExtractionError("--retry-precision fp16: retry at a wider precision, fp32 or bf16")
        options = replace(options, retry_precision=retry)
    wpath = Path(weights) if weights else None
    with terminate_as_interrupt(), process_group(rank, rt.device):
        sets = define_sets(model=model, data=data, cache=cache, weights=wpath, random_weights=random_weights,
                           splits=splits, name=name, precision=rt.precision, outputs=outputs, views=views,
                           compile=options.compile, rank=rank)  # scanned once, on rank 0
        job = _Job(sets[0].spec, rt, options, wpath, random_weights, progress or _Silent(),
                   sets=[(s.output, s.view) for s in sets])
        report = _extract_slice(sets, job, rank)
        if rank.alone and not report.failures:  # complete: the next identical request can skip torch (uptodate)
            record(request_stamp(model=model, data=data, cache=cache, weights=weights, random_weights=random_weights,
                                 splits=splits, name=name, precision=options.precision, compile=options.compile,
                                 outputs=outputs, views=views), [s.folder for s in sets])
        if not rank.torchrun:
            return report
        barrier(rank)  # every rank has flushed its shards and written its parts
        reports = gather_to_lead(rank, report)
        if rank.lead:
            note = {"ranks": rank.count, "device": str(rt.device)}
            # from what the ranks say they wrote, not a listing, which can lag on a shared filesystem
            merged = [_merge(s, wait=True, note=note, reported=[n for r in reports for n in r.written.get(s.key, [])])
                      for s in sets]  # same images: the first report speaks for all
            report = _combine(reports, merge=merged[0])
        return report


def _extract_slice(sets: list[SetDefinition], job: _Job, rank: Rank) -> ExtractReport:
    """This worker's share of every split into the store (all of it when alone), for every set at once."""
    fs = sets[0]
    report = ExtractReport(encoder=fs.spec.name, key=fs.key, folder=fs.folder, rank=rank,
                           precision=fs.fields["precision"], sets=[(s.output, s.view, s.key) for s in sets],
                           hidden=fs.dataset.hidden)
    started = now_iso()
    if not all(s.folder.exists() for s in sets):
        job.model()  # first run: missing weights fail before anything is created
    writers = {(s.output, s.view): FeatureSetWriter(
        s.folder, key=s.key, key_fields=s.fields, header=s.header, shard_rows=job.options.shard_rows,
        flush_s=job.options.flush_s, wait=job.options.wait, lock_name=rank.lock_name, publish=rank.alone)
        for s in sets}
    with WriterGroup(writers) as writer:
        report.repairs = writer.repairs
        for split, items in fs.dataset.splits.items():
            rep, failures = job.run_split(writer, split, _share(rank, items), rank=rank)
            report.splits.append(rep)
            report.failures += [dict(f, split=split) for f in failures]
        report.batch_size = job.fitted or job.options.batch_size
        if job.fitted:
            job.note(f"out of memory at batch size {job.options.batch_size}: backed off to {job.fitted} "
                     f"(use --batch-size {job.fitted} next time)")
        if job.recomputed:
            job.note(f"{job.recomputed} images non-finite at {job.rt.precision} were stored from "
                     f"{job.options.retry_precision}")
        report.notes = job.notes
        if rank.alone and (job.changed or report.repairs or any(r.extracted for r in report.splits)):
            writer.record_run({"started": started, "finished": now_iso(), "device": str(job.rt.device),
                               "batch_size": report.batch_size,
                               **({"recomputed": job.recomputed, "retry_precision": job.options.retry_precision}
                                  if job.recomputed else {}),
                               **{f"{r.split}_extracted": r.extracted for r in report.splits}})
    report.written = {s.key: writers[(s.output, s.view)].written for s in sets}
    report.store_bytes = sum(_folder_bytes(s.folder) for s in sets)
    return report


def _share(rank: Rank, items: tuple[ImageItem, ...]) -> list[ImageItem]:
    """This worker's items: every N-th image, or every N-th whole tar (a rank reads its tars front to back)."""
    if not items or items[0].member is None:
        return rank.take(items)
    mine = set(rank.take(sorted({i.file for i in items})))
    return [i for i in items if i.file in mine]


def _combine(reports: list[ExtractReport], *, merge: MergeReport) -> ExtractReport:
    """Rank 0's view of a torchrun extraction: counts summed over ranks, time of the slowest rank."""
    first = reports[0]
    splits = []
    for k, rep in enumerate(first.splits):
        parts = [r.splits[k] for r in reports]
        splits.append(SplitReport(rep.split, images=sum(p.images for p in parts),
                                  extracted=sum(p.extracted for p in parts), reused=sum(p.reused for p in parts),
                                  failed=sum(p.failed for p in parts), seconds=max(p.seconds for p in parts)))
    return replace(first, splits=splits, failures=merge.failures, store_bytes=_folder_bytes(first.folder), merge=merge,
                   notes=list(dict.fromkeys(n for r in reports for n in r.notes)),
                   batch_size=min(r.batch_size for r in reports))


def merge(*, model: str, data: str | Path, cache: str | Path | None = None, weights: str | Path | None = None,
          random_weights: bool = False, splits: list[str] | None = None, name: str | None = None,
          precision: str = "auto", wait: bool = False, outputs: list[str] | None = None,
          views: list[str] | None = None) -> MergeReport:
    """Assemble manifest and index from the shards and parts that `--shard I/N` workers finished.

    Computes no vector: each image's content hash comes from a worker's part (trusted while the file's
    size and mtime are unchanged) or, for a worker killed before writing its part, from re-reading the
    file. What is neither stored nor recorded as failed is reported as missing.
    """
    wpath = Path(weights) if weights else None
    sets = define_sets(model=model, data=data, cache=cache, weights=wpath, random_weights=random_weights,
                       splits=splits, name=name, precision="fp32", outputs=outputs, views=views)
    merged = [_merge(_locate(s, precision), wait=wait, note={"merged": True}) for s in sets]
    return merged[0]  # every set holds the same images: the first report speaks for all


def _locate(fs: SetDefinition, precision: str) -> SetDefinition:
    """The set for `precision`; with auto, the one whose shards exist.

    auto means fp16 on a GPU and fp32 on a CPU, and a merge often runs on a login node without the
    GPU the workers had: guessing from the local device would name another feature set.
    """
    names = ("fp16", "fp32", "bf16") if precision == "auto" else (resolve_runtime("cpu", precision).precision,)
    sets = [_with_precision(fs, p, c) for p in names for c in (False, True)]
    found = [s for s in sets if s.folder.is_dir() and (shard_files(s.folder) or (s.folder / MANIFEST).exists())]
    if len(found) == 1:
        return found[0]
    if not found:
        raise StoreError(f"nothing to merge: no shards of this feature set in {fs.folder.parent} "
                         f"(looked for precision {', '.join(names)}); run featstore extract --shard I/N first")
    have = ", ".join(s.fields["precision"] + (" (compiled)" if s.fields.get("compile") else "") for s in found)
    raise StoreError(f"shards of this feature set exist for precisions {have}; choose one with --precision")


def _with_precision(fs: SetDefinition, precision: str, compile: bool = False) -> SetDefinition:
    fields = {k: v for k, v in {**fs.fields, "precision": precision}.items() if k != "compile"}
    fields.update({"compile": True} if compile else {})
    key = feature_key(fields)
    return replace(fs, fields=fields, key=key, folder=fs.folder.parent / key)


def _merge(fs: SetDefinition, *, wait: bool, note: dict[str, Any], reported: list[str] | None = None) -> MergeReport:
    """Under the main lock: adopt every shard, build each split's index from the full item list.

    `reported`: the shard and part files the workers said they wrote (torchrun ranks, gathered through
    the process group); they are opened by name even where the directory listing does not show them yet.
    """
    report = MergeReport(encoder=fs.spec.name, key=fs.key, folder=fs.folder, precision=fs.fields["precision"],
                         running=busy_worker_locks(fs.folder))
    started = now_iso()
    with FeatureSetWriter(fs.folder, key=fs.key, key_fields=fs.fields, header=fs.header, wait=wait,
                          reported=reported or ()) as writer:
        for split, items in fs.dataset.splits.items():
            rep, failed, missing = _merge_split(writer, split, list(items))
            report.splits.append(rep)
            report.failures += [dict(f, split=split) for f in failed]
            report.missing += [{"split": split, "id": i} for i in missing]
        writer.record_run({"started": started, "finished": now_iso(), **note,
                           **{f"{r.split}_missing": r.missing for r in report.splits if r.missing}})
    return report


def _merge_split(writer: FeatureSetWriter, split: str,
                 items: list[ImageItem]) -> tuple[MergeSplit, list[dict[str, str]], list[str]]:
    done, todo, stats, failures = _plan(writer, split, items)
    hashed = _verify_by_hash(writer, split, todo, done, failures)
    recorded = writer.part_failures(split)
    missing = []
    for item in todo:
        if item.id in done or item.id in failures:
            continue
        if item.id in recorded:
            failures[item.id] = recorded[item.id]
        else:
            missing.append(item.id)
    index = _build_index(items, done, stats)
    failed = [{"id": i, "reason": r} for i, r in sorted(failures.items())]
    writer.commit_split(split, index, failed, missing=len(missing))
    rep = MergeSplit(split, images=len(items), stored=len(index), failed=len(failed), missing=len(missing),
                     hashed=hashed)
    return rep, failed, missing


def _verify_by_hash(writer: FeatureSetWriter, split: str, todo: list[ImageItem], done: dict[str, str],
                    failures: dict[str, str]) -> int:
    """Images a worker stored but never recorded (killed before writing its part): the stored vector
    counts only if the file still hashes to the sha1 stored with it. Reads files, computes no vector."""
    ids = writer.stored_ids(split)
    count = 0
    for item in todo:
        if item.id not in ids:
            continue
        try:
            sha = sha1_bytes(read_item(item.file, item.member))
        except ImageDecodeError as e:
            failures[item.id] = str(e)
            continue
        if writer.is_stored(split, item.id, sha):
            done[item.id] = sha
            count += 1
    return count


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


class _Job:
    """Per-run state: the model is built lazily, only when some image actually needs computing."""

    def __init__(self, spec: EncoderSpec, rt: Runtime, options: ExtractOptions, weights: Path | None,
                 random_weights: bool, progress: Progress, *, sets: list[SetId]) -> None:
        self.spec, self.rt, self.options, self.progress = spec, rt, options, progress
        self.weights, self.random_weights = weights, random_weights
        self.sets = sets
        self.outputs = tuple(dict.fromkeys(o for o, _ in sets))
        self.views = tuple(dict.fromkeys(v for _, v in sets))
        self._model: tuple[torch.nn.Module, Any] | None = None
        self.fitted = 0  # batch size that fitted after an out-of-memory back-off (0: the loader's own)
        self.recomputed = 0  # images non-finite at the run's precision, stored from the retry precision
        self.notes: list[str] = []
        self.changed = False  # some split's index or failures changed (a no-op rerun records and rewrites nothing)

    def model(self) -> tuple[torch.nn.Module, Any]:
        if self._model is None:
            model, preprocess = create_encoder(self.spec, weights=self.weights, random_weights=self.random_weights,
                                               outputs=self.outputs)
            self._model = (prepare_model(model, self.rt, compile=self.options.compile), preprocess)
        return self._model

    def run_split(self, writer: WriterGroup, split: str, items: list[ImageItem], *,
                  rank: Rank) -> tuple[SplitReport, list[dict[str, str]]]:
        t0 = time.perf_counter()
        rep = SplitReport(split, images=len(items))
        done, todo, stats, failures = _plan(writer, split, items)
        if todo:  # bytes another dataset folder's set already embedded (a copied or moved folder): copy, not compute
            todo = borrow(writer, split, todo, done)
        rep.reused = len(done)
        if todo:
            self.model()  # weights problems surface before a progress bar is drawn
        self.progress.start(split, len(items))
        self.progress.advance(len(done) + len(failures))
        if todo:
            self._compute(writer, split, todo, stats, done, failures, rep)
        self.progress.end()
        rep.failed = len(failures)
        index = _build_index(items, done, stats)
        failed = [{"id": i, "reason": r} for i, r in sorted(failures.items())]
        if rank.alone:
            self.changed = writer.commit_split(split, index, failed) or self.changed
        else:
            writer.commit_part(split, index, failed, rank=rank.index, count=rank.count)
        rep.seconds = time.perf_counter() - t0
        return rep, failed

    def _compute(self, writer: WriterGroup, split: str, todo: list[ImageItem], stats: dict[str, tuple[int, int]],
                 done: dict[str, str], failures: dict[str, str], rep: SplitReport) -> None:
        model, preprocess = self.model()
        workers = default_workers(self.rt.cuda) if self.options.workers is None else self.options.workers
        stored = writer.stored_hashes(split, {i.id for i in todo})
        loader = make_loader(ImageWork(todo, preprocess, stored=stored), batch_size=self.options.batch_size,
                             workers=workers, pin_memory=self.rt.cuda, item_bytes=_item_bytes(self.spec), note=self.note)
        for batch in loader:
            for pos, _sha, reason in batch.failed:
                failures[todo[pos].id] = reason
            for pos, sha in batch.stored:  # hashed, found stored in every set, never decoded
                done[todo[pos].id] = sha
            rep.reused += len(batch.stored)
            keep = [k for k, (p, h) in enumerate(zip(batch.pos, batch.sha1))
                    if not writer.is_stored(split, todo[p].id, h)]  # touched but unchanged: hash says stored
            for k in set(range(len(batch.pos))) - set(keep):
                done[todo[batch.pos[k]].id] = batch.sha1[k]
                rep.reused += 1
            if keep:
                sel = [todo[batch.pos[k]] for k in keep]
                feats, bad = self._encode(model, preprocess, _rows(batch.pixels, keep))
                for k, reason in bad.items():
                    failures[sel[k].id] = reason
                ok = [k for k in range(len(sel)) if k not in bad]
                sha = [batch.sha1[keep[k]] for k in ok]
                ids = [sel[k].id for k in ok]
                if ok:
                    rows = ok if bad else slice(None)
                    writer.add(split, ids, [sel[k].label for k in ok], sha, {s: f[rows] for s, f in feats.items()})
                done.update(zip(ids, sha))
                rep.extracted += len(ok)
            self.progress.advance(len(batch.pos) + len(batch.failed) + len(batch.stored))

    def note(self, text: str) -> None:
        """Said once per run (the CLI prints the report's notes); repeated notes are dropped."""
        if text not in self.notes:
            self.notes.append(text)

    def _encode(self, model: torch.nn.Module, preprocess: Any,
                pixels: torch.Tensor) -> tuple[dict[SetId, np.ndarray], dict[int, str]]:
        """Every set's float16 rows, and the rows that came out non-finite (row -> reason).

        With `retry_precision`, those rows are computed again at that precision before being given up:
        a fp16 overflow in one image no longer keeps a whole set from completing.
        """
        out, bad = self._forward(model, preprocess, pixels, self.rt)
        retry = self.options.retry_precision
        if bad and retry and retry != self.rt.precision:
            rows = sorted(bad)
            again, still = self._forward(model, preprocess, _rows(pixels, rows), replace(self.rt, precision=retry))
            for sid, feats in again.items():
                out[sid][rows] = feats
            bad = {rows[k]: reason for k, reason in still.items()}
            self.recomputed += len(rows) - len(still)
        return out, bad

    def _forward(self, model: torch.nn.Module, preprocess: Any, pixels: torch.Tensor,
                 rt: Runtime) -> tuple[dict[SetId, np.ndarray], dict[int, str]]:
        """One forward pass per view, in chunks of the batch size that fits; float16 rows and bad rows."""
        out: dict[SetId, list[np.ndarray]] = {}
        bad: dict[int, str] = {}
        for view in self.views:
            x = apply_view(view, pixels)
            for start, y in self._chunks(model, preprocess, x, rt):
                for output, feats in y.items():
                    for k in bad_rows(feats).nonzero().flatten().tolist():
                        bad[start + k] = f"non-finite output at {rt.precision}" + (
                            "" if self.options.retry_precision else " (recompute with --retry-precision fp32)")
                    out.setdefault((output, view), []).append(feats.numpy().astype(np.float16))
        return {sid: np.concatenate(parts) for sid, parts in out.items()}, bad

    def _chunks(self, model: torch.nn.Module, preprocess: Any, x: torch.Tensor, rt: Runtime):
        """(start row, outputs) over `x` in slices of the batch size that fits: an out-of-memory error
        halves it (said once) and retries, down to one image, which then fails the run."""
        start = 0
        while start < len(x):
            size = self.fitted or len(x)
            try:
                y = encode_batch(model, x[start:start + size], preprocess, rt)
            except torch.OutOfMemoryError:
                if size <= 1:
                    raise ExtractionError("out of memory with a batch of one image: this encoder does not fit "
                                          f"on {rt.device}; use a smaller precision or another device") from None
                if rt.cuda:
                    torch.cuda.empty_cache()
                self.fitted = max(1, min(size, len(x) - start) // 2)
                continue
            yield start, y if isinstance(y, dict) else {self.outputs[0]: y}
            start += size


def _rows(pixels: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """The batch itself when every row is kept (pinned memory stays pinned, no copy); else index_select,
    one memcpy per row instead of Python-list fancy indexing's element-wise gather."""
    if len(rows) == len(pixels):
        return pixels
    return pixels.index_select(0, torch.tensor(rows, dtype=torch.long))


def _item_bytes(spec: EncoderSpec) -> int:
    """Bytes of one decoded image as the workers ship it (uint8 C x H x W), for sizing the prefetch."""
    h, w = spec.input_size
    return spec.channels * h * w


def _plan(writer: FeatureSetWriter | WriterGroup, split: str, items: list[ImageItem]):
    """Split items into already stored (by unchanged stat + stored hash), to compute, and unreadable.

    The stat records come from the last index and from the parts of workers (--shard, torchrun ranks),
    so a plain run after sharded ones re-reads nothing they finished.
    """
    known = writer.known(split)
    done: dict[str, str] = {}
    todo: list[ImageItem] = []
    stats: dict[str, tuple[int, int]] = {}  # (size, mtime_ns): a tuple is ~170 B per image, a stat_result ~700 B
    failures: dict[str, str] = {}
    for item in items:
        if item.problem:
            failures[item.id] = item.problem
            continue
        try:
            st = os.stat(item.file)
        except OSError as e:
            failures[item.id] = f"cannot read file: {e.strerror or e}"
            continue
        stats[item.id] = stat = (st.st_size, st.st_mtime_ns)
        sha = next((h for h, size, mtime in known.get(item.id, ())
                    if (size, mtime) == stat and writer.is_stored(split, item.id, h)), None)
        if sha is not None:
            done[item.id] = sha
        else:
            todo.append(item)
    return done, todo, stats, failures


def _build_index(items: list[ImageItem], done: dict[str, str], stats: dict[str, tuple[int, int]]) -> SplitIndex:
    rows = [i for i in items if i.id in done]  # items arrive sorted by id
    return SplitIndex(
        ids=np.array([i.id for i in rows], dtype=object), sha1=np.array([done[i.id] for i in rows], dtype=object),
        labels=np.array([i.label for i in rows], dtype=np.int64),
        size=np.array([stats[i.id][0] for i in rows], dtype=np.int64),
        mtime_ns=np.array([stats[i.id][1] for i in rows], dtype=np.int64),
    )
