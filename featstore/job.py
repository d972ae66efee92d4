"""One extraction run's state and loop: plan a split, decode, embed and hand rows to the writer thread.

The loop keeps the device busy: batch k+1 is uploaded on a side stream (DeviceFeed) and its forward
queued before the rows of batch k are waited for and handed to the writer thread (BackgroundWriter),
which writes and fsyncs shards while the next batches compute. On the CPU nothing is deferred.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featstore.background import BackgroundWriter
from featstore.datasets import ImageItem
from featstore.distributed import Rank
from featstore.encoders import EncoderSpec, create_encoder
from featstore.forward import BatchEncoder, Launched, select_rows
from featstore.loader import Batch, ImageWork, default_workers, make_loader
from featstore.options import ExtractOptions
from featstore.plan import build_index, plan
from featstore.prefetch import DeviceFeed
from featstore.reports import Progress, SplitReport
from featstore.reuse import borrow
from featstore.runtime import Runtime, prepare_model
from featstore.setgroup import SetId, WriterGroup


@dataclass
class _Pending:
    """A batch whose forward is queued and whose rows are not yet handed to the writer."""

    items: list[ImageItem]
    sha1: list[str]
    launched: Launched


@dataclass
class _Tally:
    """What one split's loop fills in: stored ids (id -> sha1) and failures (id -> reason)."""

    todo: list[ImageItem]
    done: dict[str, str]
    failures: dict[str, str]
    rep: SplitReport


class Job:
    """Per-run state: the model is built lazily, only when some image actually needs computing."""

    def __init__(self, spec: EncoderSpec, rt: Runtime, options: ExtractOptions, weights: Path | None,
                 random_weights: bool, progress: Progress, *, sets: list[SetId]) -> None:
        self.spec, self.rt, self.options, self.progress = spec, rt, options, progress
        self.weights, self.random_weights = weights, random_weights
        self.sets = sets
        self.outputs = tuple(dict.fromkeys(o for o, _ in sets))
        self.views = tuple(dict.fromkeys(v for _, v in sets))
        self._encoder: BatchEncoder | None = None
        self.notes: list[str] = []
        self.changed = False  # some split's index or failures changed (a no-op rerun records and rewrites nothing)
        self.defer = rt.cuda and options.prefetch  # queue batch k+1 before waiting for batch k's rows (pointless on the CPU)

    @property
    def fitted(self) -> int:
        """Batch size that fitted after an out-of-memory back-off (0: the asked one)."""
        return self._encoder.fitted if self._encoder else 0

    @property
    def recomputed(self) -> int:
        return self._encoder.recomputed if self._encoder else 0

    def model(self) -> BatchEncoder:
        if self._encoder is None:
            model, preprocess = create_encoder(self.spec, weights=self.weights, random_weights=self.random_weights,
                                               outputs=self.outputs)
            self._encoder = BatchEncoder(prepare_model(model, self.rt, compile=self.options.compile), preprocess,
                                         self.rt, batch_size=self.options.batch_size, outputs=self.outputs,
                                         views=self.views, retry_precision=self.options.retry_precision,
                                         pad=self.options.compile)
        return self._encoder

    def note(self, text: str) -> None:
        """Said once per run (the CLI prints the report's notes); repeated notes are dropped."""
        if text not in self.notes:
            self.notes.append(text)

    def run_split(self, writer: WriterGroup, split: str, items: list[ImageItem], *,
                  rank: Rank) -> tuple[SplitReport, list[dict[str, str]]]:
        t0 = time.perf_counter()
        rep = SplitReport(split, images=len(items))
        done, todo, stats, failures = plan(writer, split, items)
        if todo:  # bytes another dataset folder's set already embedded (a copied or moved folder): copy, not compute
            todo = borrow(writer, split, todo, done)
        rep.reused = len(done)
        if todo:
            self.model()  # weights problems surface before a progress bar is drawn
        self.progress.start(split, len(items))
        self.progress.advance(len(done) + len(failures))
        if todo:
            self._compute(writer, split, _Tally(todo, done, failures, rep))
        self.progress.end()
        rep.failed = len(failures)
        index = build_index(items, done, stats)
        failed = [{"id": i, "reason": r} for i, r in sorted(failures.items())]
        if rank.alone:
            self.changed = writer.commit_split(split, index, failed) or self.changed
        else:
            writer.commit_part(split, index, failed, rank=rank.index, count=rank.count)
        rep.seconds = time.perf_counter() - t0
        return rep, failed

    def _compute(self, writer: WriterGroup, split: str, tally: _Tally) -> None:
        encoder = self.model()
        workers = default_workers(self.rt.cuda) if self.options.workers is None else self.options.workers
        stored = writer.stored_hashes(split, {i.id for i in tally.todo})
        loader = make_loader(ImageWork(tally.todo, encoder.preprocess, stored=stored),
                             batch_size=self.options.batch_size, workers=workers, pin_memory=self.rt.cuda,
                             item_bytes=_item_bytes(self.spec), note=self.note)
        feed = DeviceFeed(self.rt.device, side_stream=self.options.prefetch)
        pending: _Pending | None = None
        with BackgroundWriter(writer) if self.options.write_thread else nullcontext(writer) as sink:
            try:
                for batch in loader:
                    launched = self._launch(writer, split, batch, tally, feed)
                    # `pending` is always a batch not yet handed over: an interrupt stores it, never twice
                    ready, pending = (pending, launched) if self.defer else (launched, None)
                    if ready is not None:
                        self._store(sink, split, ready, tally)
                    self.progress.advance(len(batch.pos) + len(batch.failed) + len(batch.stored))
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the batch already computed is kept too
                if pending is not None:
                    self._store(sink, split, pending, tally)
                raise
            if pending is not None:
                self._store(sink, split, pending, tally)

    def _launch(self, writer: WriterGroup, split: str, batch: Batch, tally: _Tally,
                feed: DeviceFeed) -> _Pending | None:
        """Book the batch's failures and already-stored rows; queue the forward of the rest."""
        todo, done, rep = tally.todo, tally.done, tally.rep
        for pos, _sha, reason in batch.failed:
            tally.failures[todo[pos].id] = reason
        for pos, sha in batch.stored:  # hashed, found stored in every set, never decoded
            done[todo[pos].id] = sha
        rep.reused += len(batch.stored)
        keep = [k for k, (p, h) in enumerate(zip(batch.pos, batch.sha1))
                if not writer.is_stored(split, todo[p].id, h)]  # touched but unchanged: hash says stored
        for k in set(range(len(batch.pos))) - set(keep):
            done[todo[batch.pos[k]].id] = batch.sha1[k]
            rep.reused += 1
        if not keep:
            return None
        pixels = select_rows(feed.take(feed.stage(batch.pixels)), keep)
        return _Pending([todo[batch.pos[k]] for k in keep], [batch.sha1[k] for k in keep],
                        self.model().launch(pixels))

    def _store(self, sink: BackgroundWriter | WriterGroup, split: str, pending: _Pending, tally: _Tally) -> None:
        """Wait for the batch's rows; record its non-finite images as failures, hand the rest over."""
        feats, bad = self.model().finish(pending.launched)
        sel = pending.items
        for k, reason in bad.items():
            tally.failures[sel[k].id] = reason
        ok = [k for k in range(len(sel)) if k not in bad]
        sha = [pending.sha1[k] for k in ok]
        ids = [sel[k].id for k in ok]
        if ok:
            rows: Any = ok if bad else slice(None)
            sink.add(split, ids, [sel[k].label for k in ok], sha, {s: f[rows] for s, f in feats.items()})
        tally.done.update(zip(ids, sha))
        tally.rep.extracted += len(ok)


def _item_bytes(spec: EncoderSpec) -> int:
    """Bytes of one decoded image as the workers ship it (uint8 C x H x W), for sizing the prefetch."""
    h, w = spec.input_size
    return spec.channels * h * w

