"""Shard writes off the loop thread: rows handed to a writer thread through a bounded queue.

Why: a shard is built (HDF5 in memory), written and fsynced when it fills or ages; on the loop thread
that is time the device waits for its next batch. The crash guarantees stay those of the writer itself:
- every row handed over is buffered before the context exits (leaving drains the queue, on an error
  or SIGTERM too), then the writer's own exit flushes the buffer;
- an error in the writer thread (disk full, read-only folder) is raised in the loop thread, the same
  exception object, at the next hand-over or on leaving;
- shards are still written to a temp name and linked when complete: a kill mid-write leaves litter the
  next writer removes, never a shard that reads as valid.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from featstore.setgroup import SetId, WriterGroup

_STOP = object()
_POLL_S = 0.1  # how often a hand-over blocked on a full queue checks that the writer thread is alive


class BackgroundWriter:
    """`add` like WriterGroup.add, done by a thread; at most `depth` batches wait in between."""

    def __init__(self, writer: WriterGroup, *, depth: int = 4) -> None:
        self.writer = writer
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="featstore-writer", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> "BackgroundWriter":
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._put(_STOP, raise_error=False)
        self._thread.join()
        if self._error is not None and exc_type is None:
            raise self._error

    def add(self, split: str, ids: list[str], labels: list[int], sha1: list[str],
            features: dict[SetId, np.ndarray]) -> None:
        """Hand rows over; blocks only while `depth` batches are already waiting."""
        self._put((split, ids, labels, sha1, features), raise_error=True)

    def _put(self, item: Any, *, raise_error: bool) -> None:
        while True:
            if self._error is not None:
                if raise_error:
                    raise self._error
                return
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            try:
                self.writer.add(*item)
            except BaseException as e:  # noqa: BLE001 -- handed to the loop thread, raised there
                self._error = e
                return  # rows still queued are dropped: the loop thread stops at its next hand-over
