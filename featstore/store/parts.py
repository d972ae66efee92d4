"""What one worker of N finished in a split (index rows + failures), kept beside the shards for the merge."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py

from featstore.errors import StoreError
from featstore.store.files import h5_bytes, replace_atomically
from featstore.store.manifest import SplitIndex, read_index_datasets, write_index_datasets

_PART_RE = re.compile(r"^part-(?P<split>[A-Za-z0-9_]+)-rank(?P<rank>\d+)-of-(?P<count>\d+)\.h5$")


@dataclass(frozen=True)
class Part:
    """A worker's slice of a split: the (id, sha1, stat) of every image it holds a vector for, and why others failed.

    The stat rows let the merge trust a stored sha1 without re-reading the image; shards alone carry
    the hash but not the file's size and mtime at the time it was hashed.
    """

    name: str
    index: SplitIndex
    failures: list[dict[str, str]]


def part_name(split: str, rank: int, count: int) -> str:
    return f"part-{split}-rank{rank}-of-{count}.h5"


def write_part(folder: Path, split: str, *, rank: int, count: int, index: SplitIndex,
               failures: list[dict[str, str]]) -> str:
    """Atomic replace: a rerun of the same worker supersedes its earlier part, readers never see half a file."""
    name = part_name(split, rank, count)

    def fill(f: h5py.File) -> None:
        write_index_datasets(f, index)
        f.create_dataset("failures", data=json.dumps(failures))
        f.attrs.update({"split": split, "rank": rank, "count": count})

    replace_atomically(folder / name, h5_bytes(fill))
    return name


def read_parts(folder: Path, split: str, *, also: Iterable[str] = ()) -> list[Part]:
    """Every part of a split on disk, newest first (a newer record of an image wins when both still match).

    `also`: part names workers reported writing, opened by name even when a stale listing misses them.
    """
    paths = set(folder.iterdir()) | {folder / n for n in also if (folder / n).is_file()}
    found = [p for p in paths if (m := _PART_RE.match(p.name)) and m["split"] == split]
    found.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    return [_read_part(p) for p in found]


def _read_part(path: Path) -> Part:
    try:
        with h5py.File(path, "r") as f:
            raw = f["failures"][()]
            return Part(path.name, read_index_datasets(f), json.loads(raw.decode() if isinstance(raw, bytes) else raw))
    except (OSError, KeyError, ValueError) as e:
        raise StoreError(f"unreadable worker part {path}: {e}") from e
