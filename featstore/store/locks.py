"""Exclusive hold of a feature set for commands that change it wholesale (rm, gc), never under a live writer."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from featstore.errors import StoreLockedError
from featstore.store.writer import busy_worker_locks


@contextmanager
def hold_set(folder: Path, *, doing: str) -> Iterator[None]:
    """Hold the set's main lock (the one an extraction, a merge or a compaction holds) for ``doing``;
    refuse at once, naming the set, while any of them or a torchrun/--shard worker writes it: deleting
    a folder under a live writer loses its rows and leaves it writing into nothing."""
    folder = Path(folder)
    lock = FileLock(str(folder / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StoreLockedError(f"feature set {folder} is being written right now (an extract, merge or compact "
                               f"holds its lock); {doing} it when that run ends") from None
    try:
        busy = busy_worker_locks(folder)
        if busy:
            raise StoreLockedError(f"feature set {folder} is being written right now by {len(busy)} worker(s) "
                                   f"({', '.join(busy)}); {doing} it when they end")
        yield
    finally:
        lock.release()
