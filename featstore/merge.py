"""featstore merge: manifest and index assembled from the shards and parts of `--shard I/N` workers or torchrun ranks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from featstore.datasets import ImageItem
from featstore.errors import ImageDecodeError, StoreError
from featstore.images import sha1_bytes
from featstore.plan import build_index, plan
from featstore.reports import MergeReport, MergeSplit
from featstore.runtime import resolve_runtime
from featstore.setdef import SetDefinition, define_sets
from featstore.store import FeatureSetWriter, feature_key, now_iso
from featstore.store.keys import MANIFEST
from featstore.store.shards import shard_files
from featstore.store.writer import busy_worker_locks
from featstore.tars import read_item


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
    merged = [merge_set(_locate(s, precision), wait=wait, note={"merged": True}) for s in sets]
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


def merge_set(fs: SetDefinition, *, wait: bool, note: dict[str, Any], reported: list[str] | None = None) -> MergeReport:
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
    done, todo, stats, failures = plan(writer, split, items)
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
    index = build_index(items, done, stats)
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
