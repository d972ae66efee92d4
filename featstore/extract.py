"""featstore extract: every image of every split embedded once, stored by content, resumable."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from featstore.datasets import ImageItem, scan_dataset
from featstore.encoders import EncoderSpec, create_encoder, get_spec
from featstore.encoders.registry import backend_for
from featstore.encoders.weights import check_weights_file, file_identity
from featstore.errors import ExtractionError, NonFiniteError
from featstore.loader import ImageWork, default_workers, make_loader
from featstore.runtime import Runtime, bad_rows, encode_batch, prepare_model, resolve_runtime
from featstore.store import FeatureSetWriter, SplitIndex, default_cache, encoder_dirname, feature_key, now_iso


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
    wait: bool = False
    compile: bool = False


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
class ExtractReport:
    encoder: str
    key: str
    folder: Path
    splits: list[SplitReport] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    store_bytes: int = 0


def feature_set_fields(spec: EncoderSpec, *, weights: str, precision: str, views: int, dataset: str) -> dict[str, Any]:
    """The canonical description whose hash is the key: no batch size, workers, device or dataset contents."""
    return {"encoder": spec.key_fields(), "weights": weights, "precision": precision, "views": views,
            "dataset": dataset}


def weights_identity(spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> str:
    if random_weights:
        return "random-init:seed0"
    if weights is not None:
        return file_identity(check_weights_file(weights))
    return backend_for(spec).weights_identity(spec)


def extract(*, model: str, data: str | Path, cache: str | Path | None = None, weights: str | Path | None = None,
            random_weights: bool = False, splits: list[str] | None = None, name: str | None = None,
            options: ExtractOptions = ExtractOptions(), progress: Progress | None = None) -> ExtractReport:
    """Embed every image of the chosen splits; returns what was done. Raises FeatstoreError subclasses."""
    if weights and random_weights:
        raise ExtractionError("--weights and --random-weights exclude each other")
    spec = get_spec(model)
    dataset = scan_dataset(data, splits=splits)
    rt = resolve_runtime(options.device, options.precision)
    wpath = Path(weights) if weights else None
    fields = feature_set_fields(spec, weights=weights_identity(spec, weights=wpath, random_weights=random_weights),
                                precision=rt.precision, views=1, dataset=name or str(dataset.root))
    key = feature_key(fields)
    folder = Path(cache or default_cache()) / encoder_dirname(spec.name) / key
    header = {"encoder": spec.name, "dim": spec.dim, "views": 1, "dtype": "float16", "classes": list(dataset.classes),
              "random_weights": random_weights, "weights_source": str(wpath) if wpath else spec.weights_hint,
              "dataset": {"root": str(dataset.root), "name": fields["dataset"], "layout": dataset.layout,
                          "test_order": list(dataset.test_order) if dataset.test_order else None}}
    report = ExtractReport(encoder=spec.name, key=key, folder=folder)
    job = _Job(spec, rt, options, wpath, random_weights, progress or _Silent())
    started = now_iso()
    if not folder.exists():
        job.model()  # first run: missing weights fail before anything is created
    with FeatureSetWriter(folder, key=key, key_fields=fields, header=header, shard_rows=options.shard_rows,
                          wait=options.wait) as writer:
        for split, items in dataset.splits.items():
            report.splits.append(job.run_split(writer, split, list(items)))
            report.failures += [dict(f, split=split) for f in writer.manifest["splits"][split]["failures"]]
        writer.record_run({"started": started, "finished": now_iso(), "device": str(rt.device),
                           "batch_size": options.batch_size,
                           **{f"{r.split}_extracted": r.extracted for r in report.splits}})
    report.store_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return report


class _Job:
    """Per-run state: the model is built lazily, only when some image actually needs computing."""

    def __init__(self, spec: EncoderSpec, rt: Runtime, options: ExtractOptions, weights: Path | None,
                 random_weights: bool, progress: Progress) -> None:
        self.spec, self.rt, self.options, self.progress = spec, rt, options, progress
        self.weights, self.random_weights = weights, random_weights
        self._model: tuple[torch.nn.Module, Any] | None = None

    def model(self) -> tuple[torch.nn.Module, Any]:
        if self._model is None:
            model, preprocess = create_encoder(self.spec, weights=self.weights, random_weights=self.random_weights)
            self._model = (prepare_model(model, self.rt, compile=self.options.compile), preprocess)
        return self._model

    def run_split(self, writer: FeatureSetWriter, split: str, items: list[ImageItem]) -> SplitReport:
        t0 = time.perf_counter()
        rep = SplitReport(split, images=len(items))
        done, todo, stats, failures = _plan(writer, split, items)
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
        writer.commit_split(split, index, [{"id": i, "reason": r} for i, r in sorted(failures.items())])
        rep.seconds = time.perf_counter() - t0
        return rep

    def _compute(self, writer: FeatureSetWriter, split: str, todo: list[ImageItem], stats: dict[str, os.stat_result],
                 done: dict[str, str], failures: dict[str, str], rep: SplitReport) -> None:
        model, preprocess = self.model()
        workers = default_workers(self.rt.cuda) if self.options.workers is None else self.options.workers
        loader = make_loader(ImageWork(todo, preprocess), batch_size=self.options.batch_size, workers=workers,
                             pin_memory=self.rt.cuda)
        for batch in loader:
            for pos, _sha, reason in batch.failed:
                failures[todo[pos].id] = reason
            keep = [k for k, (p, h) in enumerate(zip(batch.pos, batch.sha1))
                    if not writer.is_stored(split, todo[p].id, h)]  # touched but unchanged: hash says stored
            for k in set(range(len(batch.pos))) - set(keep):
                done[todo[batch.pos[k]].id] = batch.sha1[k]
                rep.reused += 1
            if keep:
                feats = encode_batch(model, batch.pixels[keep], preprocess, self.rt)
                sel = [todo[batch.pos[k]] for k in keep]
                _check_finite(feats, sel)
                sha = [batch.sha1[k] for k in keep]
                writer.add(split, [i.id for i in sel], [i.label for i in sel], sha, feats.numpy().astype(np.float16))
                done.update(zip((i.id for i in sel), sha))
                rep.extracted += len(keep)
            self.progress.advance(len(batch.pos) + len(batch.failed))


def _plan(writer: FeatureSetWriter, split: str, items: list[ImageItem]):
    """Split items into already stored (by unchanged stat + stored hash), to compute, and unreadable."""
    prev = writer.previous_index(split)
    known = {i: (h, s, m) for i, h, s, m in zip(prev.ids, prev.sha1, prev.size, prev.mtime_ns)}
    done: dict[str, str] = {}
    todo: list[ImageItem] = []
    stats: dict[str, os.stat_result] = {}
    failures: dict[str, str] = {}
    for item in items:
        try:
            st = os.stat(item.path)
        except OSError as e:
            failures[item.id] = f"cannot read file: {e.strerror or e}"
            continue
        stats[item.id] = st
        k = known.get(item.id)
        if k and k[1] == st.st_size and k[2] == st.st_mtime_ns and writer.is_stored(split, item.id, k[0]):
            done[item.id] = k[0]
        else:
            todo.append(item)
    return done, todo, stats, failures


def _build_index(items: list[ImageItem], done: dict[str, str], stats: dict[str, os.stat_result]) -> SplitIndex:
    rows = [i for i in items if i.id in done]  # items arrive sorted by id
    return SplitIndex(
        ids=np.array([i.id for i in rows], dtype=object), sha1=np.array([done[i.id] for i in rows], dtype=object),
        labels=np.array([i.label for i in rows], dtype=np.int64),
        size=np.array([stats[i.id].st_size for i in rows], dtype=np.int64),
        mtime_ns=np.array([stats[i.id].st_mtime_ns for i in rows], dtype=np.int64),
    )


def _check_finite(feats: torch.Tensor, items: list[ImageItem]) -> None:
    bad = bad_rows(feats)
    if bad.any():
        names = [items[k].id for k in bad.nonzero().flatten().tolist()]
        raise NonFiniteError(f"encoder produced NaN/Inf (or values beyond float16) for {len(names)} images: "
                             f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}; nothing of them was stored")
