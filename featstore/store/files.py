"""Durable file writes: HDF5 built in memory, then written with plain writes that fail cleanly.

HDF5 writing straight to disk cannot recover from a full disk: h5py raises a cascade of errors while
closing and can crash the interpreter. Building the file image in memory and writing its bytes with
os.write turns disk full, quota and read-only into one OSError naming the folder."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import h5py


def h5_bytes(fill: Callable[[h5py.File], None]) -> bytes:
    """The bytes of an HDF5 file that `fill` populates (in memory; shards are tens of MB at most)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    return buf.getvalue()


def write_new(path: Path, data: bytes) -> None:
    """Create `path` with `data`, fsynced; on failure nothing is left behind and the OSError names the folder."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path.parent)) from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path.parent)) from None
    os.close(fd)


def replace_atomically(path: Path, data: bytes) -> None:
    """Readers see the old or the new content, never half of it; a failed write leaves no temp file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    write_new(tmp, data)
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path.parent)) from None
