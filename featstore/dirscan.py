"""Directory listings read by a pool of threads: a scan of a network filesystem waits on many folders at once."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Generic, TypeVar

Tag = TypeVar("Tag")
#: Threads for a dataset on a network filesystem. Listing a folder or stat'ing a file there is a round trip
#: (0.5-1 ms, most of a million-image scan); os.scandir and os.stat release the GIL while they wait. On a
#: local disk the same scan is bound by Python's own work per entry, and threads only contend for the GIL
#: (bench/noop_rerun.py: slower), so a local dataset is scanned in one thread.
AUTO_THREADS = 8
#: Filesystem types (/proc/self/mounts) whose metadata calls go over the network.
REMOTE_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
                                "glusterfs", "9p", "afs", "panfs", "wekafs", "orangefs", "pvfs2"})


def scan_threads(threads: int | None = None, *, root: str | os.PathLike | None = None) -> int:
    """`threads`, else FEATSTORE_SCAN_THREADS, else AUTO_THREADS when `root` is on a network filesystem
    (fuse mounts such as s3fs or gcsfuse included), else 1. 1 (or 0) lists folders one at a time."""
    if threads is None:
        env = os.environ.get("FEATSTORE_SCAN_THREADS", "").strip()
        if env.isdigit():
            threads = int(env)
        else:
            threads = AUTO_THREADS if root is not None and is_remote(root) else 1
    return max(1, threads)


def is_remote(path: str | os.PathLike, *, mounts: str = "/proc/self/mounts") -> bool:
    """Whether `path` lies on a network filesystem, from the mount table (False where there is none)."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open(mounts) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return False
    return kind in REMOTE_FILESYSTEMS or kind.startswith("fuse.")


def read_dir(folder: str) -> list[os.DirEntry]:
    """The entries of `folder`, with what a walk asks of its sub-folders (is_dir, stat) already fetched in
    this thread: os.DirEntry caches both, so the walk's own thread does not pay the round trips."""
    with os.scandir(folder) as it:
        entries = list(it)
    for e in entries:
        if e.is_dir():
            e.stat()
    return entries


class DirReader(Generic[Tag]):
    """Folders submitted (with a tag) come back as (tag, entries) in completion order; more folders may be
    submitted while results are consumed. With one thread, folders are read in the caller's thread, in
    submission order (last in, first out, like a depth-first walk)."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="scan") if threads > 1 else None
        self._queued: deque[tuple[Tag, str]] = deque()
        self._running: dict[Future, Tag] = {}

    def submit(self, folder: str, tag: Tag) -> None:
        if self._pool is None:
            self._queued.append((tag, folder))
        else:
            self._running[self._pool.submit(read_dir, folder)] = tag

    def results(self) -> Iterator[tuple[Tag, list[os.DirEntry]]]:
        while self._queued:
            tag, folder = self._queued.pop()
            yield tag, read_dir(folder)
        while self._running:
            done, _ = wait(self._running, return_when=FIRST_COMPLETED)
            for future in done:
                yield self._running.pop(future), future.result()  # a folder's OSError surfaces here, as serially

    def __enter__(self) -> "DirReader[Tag]":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            for future in self._running:
                future.cancel()
            self._pool.shutdown(wait=True)


def stat_files(paths: Sequence[str], *, threads: int, chunk: int = 2048, missing_ok: bool = False) -> tuple[Any, Any]:
    """(size, mtime_ns) int64 arrays of `paths`, stat'ed by `threads` threads in chunks: one stat per image
    is the rest of a no-op rerun's scan, and a round trip each on a network filesystem. OSError as os.stat,
    or with `missing_ok` -1 in both arrays for a file that cannot be stat'ed (the caller reports it per file)."""
    import numpy as np

    size = np.empty(len(paths), np.int64)
    mtime = np.empty(len(paths), np.int64)

    def fill(start: int) -> None:
        for k in range(start, min(start + chunk, len(paths))):
            try:
                st = os.stat(paths[k])
            except OSError:
                if not missing_ok:
                    raise
                size[k] = mtime[k] = -1
                continue
            size[k], mtime[k] = st.st_size, st.st_mtime_ns

    starts = range(0, len(paths), chunk)
    if threads <= 1 or len(starts) <= 1:
        for s in starts:
            fill(s)
    else:
        with ThreadPoolExecutor(min(threads, len(starts)), thread_name_prefix="stat") as pool:
            list(pool.map(fill, starts))  # list(): re-raises the first OSError
    return size, mtime
