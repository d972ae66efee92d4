"""Webdataset tar shards: DIR/{train,val,test}/*.tar, each sample an image member plus `cls` or `txt`.

The layout img2dataset and clip-retrieval write: ~10,000 images per tar, so a million images are ~100
files to list and stat instead of a million. A sample's members share a key (`dir/abc.jpg`,
`dir/abc.cls` -> key `dir/abc`); the key is the image id. Class names come from DIR/classes.txt (one a
line, in class-index order); `cls` holds the index, `txt` the name. Only headers and the small label
members are read by the scan; an image's bytes are read later from its offset in the tar.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from featstore.errors import ImageDecodeError, LayoutError
from featstore.images import read_bytes

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")
SPLITS = ("train", "val", "test")


def is_tar_layout(root: Path) -> bool:
    return any(any((root / s).glob("*.tar")) for s in SPLITS if (root / s).is_dir())


def scan_tars(root: Path, requested: tuple[str, ...] | None, select: Any, make_item: Any) -> dict[str, Any]:
    """{"classes", "splits"}: items of each split (ids sorted), built by `make_item(id, file, label, member)`."""
    found = tuple(s for s in SPLITS if (root / s).is_dir() and any((root / s).glob("*.tar")))
    names = root / "classes.txt"
    if not names.is_file() and set(found) - {"test"}:
        raise LayoutError(f"{names} is missing: the tar layout names its classes there, one a line in index order")
    classes = tuple(n.strip() for n in names.read_text().splitlines() if n.strip()) if names.is_file() else ()
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split in select(found, requested, root):
        items = []
        for tar in sorted((root / split).glob("*.tar")):
            for key, image, label in _samples(tar, labeled=split != "test"):
                items.append(make_item(key, str(tar), _label(label, index, tar, key) if split != "test" else -1, image))
        ids = [i.id for i in items]
        if len(set(ids)) != len(ids):
            raise LayoutError(f"{root / split}: the same sample key appears twice across its tars")
        splits[split] = tuple(sorted(items, key=lambda item: item.id))
    return {"classes": classes, "splits": splits}


def _samples(tar: Path, *, labeled: bool):
    """(key, (offset, size) of the image member, cls/txt text or None) per sample, in tar order."""
    samples: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(tar, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                folder, _, base = m.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot:
                    continue
                key = f"{folder}/{stem}" if folder else stem
                s = samples.setdefault(key, {})
                ext = ext.lower()
                if ext in IMAGE_MEMBERS and "image" not in s:
                    s["image"] = (m.offset_data, m.size)
                elif ext in ("cls", "txt") and labeled:
                    s[ext] = tf.extractfile(m).read().decode("utf-8").strip()
    except (tarfile.TarError, OSError) as e:
        raise LayoutError(f"cannot read tar {tar}: {e}") from e
    for key, s in samples.items():
        if "image" in s:
            yield key, s["image"], s.get("cls", s.get("txt"))


def _label(text: str | None, index: dict[str, int], tar: Path, key: str) -> int:
    if text is None:
        raise LayoutError(f"{tar}: sample {key} has no cls or txt member (its class)")
    if text.lstrip("-").isdigit():
        label = int(text)
        if index and not 0 <= label < len(index):
            raise LayoutError(f"{tar}: sample {key} has class {label}, classes.txt lists {len(index)}")
        return label
    if text not in index:
        raise LayoutError(f"{tar}: sample {key} has class {text!r}, not in classes.txt")
    return index[text]


def read_item(file: str, member: tuple[int, int] | None) -> bytes:
    """An image's bytes: the whole file, or one member of a tar by offset (no tar parsing per image)."""
    if member is None:
        return read_bytes(file)
    offset, size = member
    try:
        with open(file, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError as e:
        raise ImageDecodeError(f"cannot read {file}: {e.strerror or e}") from e
    if len(data) != size:
        raise ImageDecodeError(f"tar member at {offset} of {file} is truncated")
    return data
