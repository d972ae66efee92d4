"""A no-op rerun without torch: the same request's last result, checked against a fresh scan of the dataset.

Importing torch, timm and open_clip takes seconds and ~1 GB before a rerun can find that nothing
changed. After each complete run, extract records which sets answered the request (the options as
given, library versions, featstore's own code, the weights file's stat, whether a GPU is visible);
the CLI asks `up_to_date` first, which scans the dataset (no decode, no hash) and compares ids,
labels, sizes and mtimes with each set's index. Anything it is unsure of sends it to the full path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from featstore.datasets import scan_dataset
from featstore.dirscan import scan_threads, stat_files
from featstore.errors import FeatstoreError
from featstore.store.keys import canonical_json, default_cache
from featstore.store.manifest import read_index, read_manifest
from featstore.store.writer import busy_worker_locks

STAMPS = ".requests"
_LIBRARIES = ("torch", "timm", "open_clip_torch", "torchvision", "Pillow")


def request_stamp(*, model: str, data: str | Path, cache: str | Path | None, weights: str | Path | None,
                  random_weights: bool, splits: list[str] | None, name: str | None, precision: str, compile: bool,
                  outputs: list[str] | None, views: list[str] | None) -> Path:
    """Where the answer to this request is recorded (the extract options as given, before any resolution)."""
    request = {"model": model, "data": str(Path(data).resolve()), "weights": _file_stat(weights),
               "random_weights": random_weights, "splits": splits, "name": name, "precision": precision,
               "compile": compile, "outputs": outputs, "views": views, "env": _environment()}
    digest = hashlib.sha1(canonical_json(request).encode()).hexdigest()[:24]
    return Path(cache or default_cache()) / STAMPS / f"{digest}.json"


def record(stamp: Path, folders: list[Path]) -> None:
    """Best effort: a stamp that cannot be written only means the next rerun takes the full path."""
    with contextlib.suppress(OSError):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"folders": [str(f) for f in folders]}))
        os.replace(tmp, stamp)


def up_to_date(stamp: Path, *, data: str | Path, splits: list[str] | None) -> tuple[list[Path], int] | None:
    """(the sets, images) when every set already holds every image of the dataset unchanged; else None."""
    try:
        folders = [Path(f) for f in json.loads(stamp.read_text())["folders"]]
        dataset = scan_dataset(data, splits=splits)
        for folder in folders:
            if not _holds(folder, dataset):
                return None
    except (OSError, ValueError, KeyError, TypeError, FeatstoreError):
        return None
    return folders, sum(len(items) for items in dataset.splits.values())


def _holds(folder: Path, dataset: Any) -> bool:
    m = read_manifest(folder)
    if m.get("classes") != list(dataset.classes) or busy_worker_locks(folder):
        return False
    for split, items in dataset.splits.items():
        entry = m["splits"].get(split)
        if not entry or "index" not in entry or entry.get("failures") or entry.get("missing"):
            return False
        if not all(os.path.exists(folder / s) for s in entry["shards"]):
            return False
        index = read_index(folder, split)
        if len(index) != len(items) or any(i.problem for i in items):
            return False
        if not (np.array_equal(index.ids, np.array([i.id for i in items], dtype=object))
                and np.array_equal(index.labels, np.fromiter((i.label for i in items), np.int64, len(items)))):
            return False
        size, mtime = _stats(items, dataset.root)
        if not (np.array_equal(index.size, size) and np.array_equal(index.mtime_ns, mtime)):
            return False
    return True


def _stats(items: Any, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(size, mtime_ns) of each file straight into arrays (a list of stat results is ~200 B per image), by the
    scan's threads (featstore.dirscan.scan_threads): on a network filesystem each stat is a round trip."""
    return stat_files([i.file for i in items], threads=scan_threads(root=root))


def _file_stat(path: str | Path | None) -> list | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [str(path)]
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def _environment() -> dict[str, Any]:
    """What can change the sets a request names without changing the request: library versions (the
    specs come from the libraries' configs), featstore's own code, and whether a GPU is visible (auto)."""
    versions = {}
    for lib in _LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    code = Path(__file__).parent
    mtimes = sorted((str(p.relative_to(code)), p.stat().st_mtime_ns) for p in code.rglob("*.py"))
    return {"versions": versions, "code": hashlib.sha1(repr(mtimes).encode()).hexdigest(),
            "gpu": os.path.exists("/proc/driver/nvidia/version"), "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
