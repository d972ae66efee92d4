"""One batch through the model: every view, in chunks that fit, padded under --compile; non-finite rows retried.

`launch` queues the forward passes and returns at once on a GPU; `finish` waits for the rows, finds the
non-finite ones and recomputes them at the retry precision. Between the two the loop thread is free.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from featstore.compiled import pad_rows
from featstore.errors import ExtractionError
from featstore.runtime import HostRows, Runtime, bad_rows, launch_batch
from featstore.setgroup import SetId
from featstore.views import apply_view


@dataclass
class Launched:
    """A batch whose forward passes are queued: (view, first row, real rows, outputs) per chunk."""

    pixels: torch.Tensor  # kept for a retry at another precision
    rt: Runtime
    chunks: list[tuple[str, int, int, HostRows]]


class BatchEncoder:
    """The model, how to run it, and what a run learnt: the batch size that fitted, images recomputed."""

    def __init__(self, model: torch.nn.Module, preprocess: Any, rt: Runtime, *, batch_size: int,
                 outputs: tuple[str, ...], views: tuple[str, ...], retry_precision: str | None = None,
                 pad: bool = False) -> None:
        self.model, self.preprocess, self.rt = model, preprocess, rt
        self.batch_size, self.outputs, self.views = batch_size, outputs, views
        self.retry_precision, self.pad = retry_precision, pad
        self.fitted = 0  # batch size that fitted after an out-of-memory back-off (0: the asked one)
        self.recomputed = 0  # images non-finite at the run's precision, stored from the retry precision

    def launch(self, pixels: torch.Tensor, rt: Runtime | None = None) -> Launched:
        rt = rt or self.rt
        chunks = [(view, start, n, y) for view in self.views
                  for start, n, y in self._chunks(apply_view(view, pixels), rt)]
        return Launched(pixels, rt, chunks)

    def finish(self, launched: Launched) -> tuple[dict[SetId, np.ndarray], dict[int, str]]:
        """Every set's float16 rows, and the rows that came out non-finite (row -> reason).

        With `retry_precision`, those rows are computed again at that precision before being given up:
        a fp16 overflow in one image no longer keeps a whole set from completing.
        """
        out, bad = self._collect(launched)
        retry = self.retry_precision
        if bad and retry and retry != self.rt.precision:
            rows = sorted(bad)
            again, still = self._collect(self.launch(select_rows(launched.pixels, rows),
                                                     replace(self.rt, precision=retry)))
            for sid, feats in again.items():
                out[sid][rows] = feats
            bad = {rows[k]: reason for k, reason in still.items()}
            self.recomputed += len(rows) - len(still)
        return out, bad

    def _collect(self, launched: Launched) -> tuple[dict[SetId, np.ndarray], dict[int, str]]:
        out: dict[SetId, list[np.ndarray]] = {}
        bad: dict[int, str] = {}
        hint = "" if self.retry_precision else " (recompute with --retry-precision fp32)"
        for view, start, n, host in launched.chunks:
            rows = host.wait()
            for output, feats in (rows.items() if host.multi else [(self.outputs[0], rows[""])]):
                feats = feats[:n].numpy()  # padding rows dropped
                for k in np.flatnonzero(bad_rows(feats)).tolist():
                    bad[start + k] = f"non-finite output at {launched.rt.precision}{hint}"
                with np.errstate(over="ignore", invalid="ignore"):  # those rows are reported, not stored
                    out.setdefault((output, view), []).append(feats.astype(np.float16))
        return {sid: np.concatenate(parts) for sid, parts in out.items()}, bad

    def _chunks(self, x: torch.Tensor, rt: Runtime) -> Iterator[tuple[int, int, HostRows]]:
        """(start row, real rows, outputs) over `x` in slices of the batch size that fits: an out-of-memory
        error halves it (said once by the job) and retries, down to one image, which then fails the run.
        With `pad`, every slice is padded to that size: one input shape, so a compiled model never recompiles."""
        start = 0
        while start < len(x):
            size = self.fitted or (self.batch_size if self.pad else len(x))
            part = x[start:start + size]
            try:
                y = launch_batch(self.model, pad_rows(part, size) if self.pad else part, self.preprocess, rt)
            except torch.OutOfMemoryError:
                if size <= 1:
                    raise ExtractionError("out of memory with a batch of one image: this encoder does not fit "
                                          f"on {rt.device}; use a smaller precision or another device") from None
                if rt.cuda:
                    torch.cuda.empty_cache()
                self.fitted = max(1, (size if self.pad else min(size, len(x) - start)) // 2)
                continue
            yield start, len(part), y
            start += len(part)


def select_rows(pixels: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """The batch itself when every row is kept (pinned memory stays pinned, no copy); else index_select,
    one memcpy per row instead of Python-list fancy indexing's element-wise gather."""
    if len(rows) == len(pixels):
        return pixels
    index = torch.tensor(rows, dtype=torch.long)
    if pixels.is_cuda:  # a pageable upload would wait for the forward in flight; a pinned one is queued
        index = index.pin_memory().to(pixels.device, non_blocking=True)
    return pixels.index_select(0, index)
