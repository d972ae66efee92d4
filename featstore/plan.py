"""Before computing: which images are stored already (unchanged stat + stored hash), and the split index after."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featstore.datasets import ImageItem
from featstore.setgroup import WriterGroup
from featstore.store import FeatureSetWriter, SplitIndex


def plan(writer: FeatureSetWriter | WriterGroup, split: str, items: list[ImageItem]):
    """Split items into already stored (by unchanged stat + stored hash), to compute, and unreadable.

    The stat records come from the last index and from the parts of workers (--shard, torchrun ranks),
    so a plain run after sharded ones re-reads nothing they finished.
    """
    known = writer.known(split)
    done: dict[str, str] = {}
    todo: list[ImageItem] = []
    stats: dict[str, tuple[int, int]] = {}  # (size, mtime_ns): a tuple is ~170 B per image, a stat_result ~700 B
    failures: dict[str, str] = {}
    for item in items:
        if item.problem:
            failures[item.id] = item.problem
            continue
        try:
            st = os.stat(item.file)
        except OSError as e:
            failures[item.id] = f"cannot read file: {e.strerror or e}"
            continue
        stats[item.id] = stat = (st.st_size, st.st_mtime_ns)
        sha = next((h for h, size, mtime in known.get(item.id, ())
                    if (size, mtime) == stat and writer.is_stored(split, item.id, h)), None)
        if sha is not None:
            done[item.id] = sha
        else:
            todo.append(item)
    return done, todo, stats, failures


def build_index(items: list[ImageItem], done: dict[str, str], stats: dict[str, tuple[int, int]]) -> SplitIndex:
    rows = [i for i in items if i.id in done]  # items arrive sorted by id
    return SplitIndex(
        ids=np.array([i.id for i in rows], dtype=object), sha1=np.array([done[i.id] for i in rows], dtype=object),
        labels=np.array([i.label for i in rows], dtype=np.int64),
        size=np.array([stats[i.id][0] for i in rows], dtype=np.int64),
        mtime_ns=np.array([stats[i.id][1] for i in rows], dtype=np.int64),
    )


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())

