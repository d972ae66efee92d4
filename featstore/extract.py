"""featstore extract: every image of every split embedded once, stored by content, resumable.

The pieces, one file each: options.py (ExtractOptions), setdef.py (what names a feature set), plan.py
(what is stored already), job.py (the loop), forward.py (one batch through the model), background.py
(the writer thread), prefetch.py (uploads on a side stream), compiled.py (--compile), merge.py, reports.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from featstore.datasets import ImageItem
from featstore.distributed import Rank, barrier, bind_device, gather_to_lead, process_group
from featstore.errors import ExtractionError
from featstore.job import Job
from featstore.merge import merge, merge_set
from featstore.options import ExtractOptions
from featstore.plan import folder_bytes
from featstore.reports import ExtractReport, MergeReport, MergeSplit, Progress, Silent, SplitReport
from featstore.runtime import resolve_runtime
from featstore.setdef import SetDefinition, define_set, define_sets, feature_set_fields, weights_identity
from featstore.signals import terminate_as_interrupt
from featstore.store import FeatureSetWriter, now_iso
from featstore.setgroup import WriterGroup
from featstore.uptodate import record, request_stamp

__all__ = ["ExtractOptions", "ExtractReport", "MergeReport", "MergeSplit", "Progress", "SetDefinition",
           "SplitReport", "define_set", "define_sets", "extract", "feature_set_fields", "merge", "weights_identity"]


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
        job = Job(sets[0].spec, rt, options, wpath, random_weights, progress or Silent(),
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
            merged = [merge_set(s, wait=True, note=note, reported=[n for r in reports for n in r.written.get(s.key, [])])
                      for s in sets]  # same images: the first report speaks for all
            report = _combine(reports, merge=merged[0])
        return report


def _extract_slice(sets: list[SetDefinition], job: Job, rank: Rank) -> ExtractReport:
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
    report.store_bytes = sum(folder_bytes(s.folder) for s in sets)
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
    return replace(first, splits=splits, failures=merge.failures, store_bytes=folder_bytes(first.folder), merge=merge,
                   notes=list(dict.fromkeys(n for r in reports for n in r.notes)),
                   batch_size=min(r.batch_size for r in reports))

