"""File content hashes remembered by (path, size, mtime): a 4 GB weights file is hashed once, not every run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_path() -> Path:
    """FEATSTORE_HASH_CACHE, else ~/.cache/featstore/file-hashes.json (XDG_CACHE_HOME honoured)."""
    if env := os.environ.get("FEATSTORE_HASH_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "featstore" / "file-hashes.json"


def cached_hash(path: Path, compute: Callable[[Path], str]) -> str:
    """`compute(path)`, or the value recorded for the same resolved path, size and mtime.

    A file replaced in place changes size or mtime and is hashed again; a copy elsewhere is hashed once
    more under its own path. The cache is a convenience: when it cannot be read or written (read-only
    home, two ranks writing at once) the hash is simply computed, never guessed.
    """
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    store = cache_path()
    table = _read(store)
    entry = table.get(str(path))
    if entry and entry[:2] == stamp:
        return entry[2]
    value = compute(path)
    table[str(path)] = [*stamp, value]
    _write(store, table)
    return value


def _read(store: Path) -> dict[str, list]:
    try:
        table = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def _write(store: Path, table: dict[str, list]) -> None:
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".file-hashes-", dir=store.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(table, f)
        os.replace(tmp, store)  # readers see the old table or the new one, never half of one
    except OSError:
        pass  # no cache this time (see cached_hash)
