"""DataLoader side of extraction: workers read, hash, decode and resize; the main process runs the model."""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from featstore.datasets import ImageItem
from featstore.encoders.preprocess import Preprocess
from featstore.errors import ImageDecodeError
from featstore.images import decode_image, sha1_bytes
from featstore.tars import read_item


@dataclass(frozen=True)
class Decoded:
    """One work item after the worker: pixels, or the reason there are none."""

    pos: int
    sha1: str
    pixels: torch.Tensor | None
    error: str | None
    stored: bool = False  # its bytes are already stored under its id: not decoded


class ImageWork(Dataset):
    """Items to extract; each __getitem__ reads the file once for both the hash and the pixels.

    `threads`: how many images of a batch __getitems__ decodes at once (None: make_loader decides).
    Pillow, hashlib and file reads release the GIL, so threads scale for the decode itself.
    `stored`: id -> content hashes already stored for it. The hash comes before the decode, so a file
    whose mtime changed but whose bytes did not (a copy that lost mtimes) is read and hashed, never decoded.
    """

    def __init__(self, items: list[ImageItem], preprocess: Preprocess, *, threads: int | None = None,
                 stored: dict[str, set[str]] | None = None) -> None:
        self.items, self.preprocess, self.threads = items, preprocess, threads
        self.stored = stored or {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitems__(self, positions: list[int]) -> list[Decoded]:
        """A whole batch (the DataLoader calls this when it exists), in order, on `threads` threads."""
        threads = min(self.threads or 1, len(positions))
        if threads <= 1:
            return [self[p] for p in positions]
        with ThreadPoolExecutor(threads, thread_name_prefix="featstore-decode") as pool:
            return list(pool.map(self.__getitem__, positions))

    def __getitem__(self, pos: int) -> Decoded:
        item = self.items[pos]
        try:
            data = read_item(item.file, item.member)
        except ImageDecodeError as e:
            return Decoded(pos, "", None, str(e))
        sha1 = sha1_bytes(data)
        if sha1 in self.stored.get(item.id, ()):
            return Decoded(pos, sha1, None, None, stored=True)
        try:
            img = decode_image(data, keep_gray=True)
            return Decoded(pos, sha1, self.preprocess.to_uint8(img), None)
        except ImageDecodeError as e:
            return Decoded(pos, sha1, None, str(e))
        except (ValueError, OSError, RuntimeError) as e:  # a geometry op refusing odd pixels: recorded, not lost
            return Decoded(pos, sha1, None, f"preprocessing failed: {e}")


@dataclass
class Batch:
    pos: list[int]
    sha1: list[str]
    pixels: torch.Tensor  # uint8 [B, C, H, W] of the decodable items
    failed: list[tuple[int, str, str]]  # (pos, sha1, reason)
    stored: list[tuple[int, str]] = field(default_factory=list)  # (pos, sha1) found stored by hash, not decoded

    def pin_memory(self) -> "Batch":
        self.pixels = self.pixels.pin_memory()
        return self


def collate(rows: list[Decoded]) -> Batch:
    ok = [r for r in rows if r.pixels is not None]
    pixels = torch.stack([r.pixels for r in ok]) if ok else torch.empty(0, dtype=torch.uint8)
    return Batch([r.pos for r in ok], [r.sha1 for r in ok], pixels,
                 [(r.pos, r.sha1, r.error or "") for r in rows if r.pixels is None and not r.stored],
                 [(r.pos, r.sha1) for r in rows if r.stored])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    # Pillow allocates and frees large buffers per image; with glibc's default dynamic mmap threshold
    # each one can page-fault anew. A fixed 64 MiB threshold keeps them on the heap. (Re-checked with
    # Pillow 13 / glibc here: the call succeeds but the dynamic threshold already adapts after the
    # first image, ~8 faults per image either way; no measurable speed change, so the main process
    # is left untuned.)
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def make_loader(work: ImageWork, *, batch_size: int, workers: int, pin_memory: bool, item_bytes: int = 0,
                note: Callable[[str], None] | None = None) -> DataLoader:
    """workers > 0: one image at a time in each worker process; 0: each batch decoded in the main
    process on one thread per core, between two forward passes (see default_workers).

    `item_bytes` (one decoded image) sizes the prefetch and the shared-memory check; `note` is told,
    once, when the sharing strategy had to change.
    """
    if work.threads is None:
        work.threads = 1 if workers > 0 else min(8, _cpus())
    kwargs: dict[str, Any] = {}
    if workers > 0:
        batch_bytes = max(1, batch_size * item_bytes)
        prefetch = prefetch_factor(batch_bytes, workers)
        kwargs.update(worker_init_fn=_worker_init, prefetch_factor=prefetch, persistent_workers=False)
        _fit_shared_memory(batch_bytes * workers * prefetch, note or (lambda _: None))
    return DataLoader(work, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, **kwargs)


# Decoded batches in flight per process (workers x prefetch, each in shared memory, then pinned): with
# 8 ranks a node holds 8x this. 512 MiB keeps a node of 8 ranks under ~4 GiB of locked memory.
IN_FLIGHT_BYTES = 512 << 20
SHM = Path("/dev/shm")


def prefetch_factor(batch_bytes: int, workers: int, *, budget: int = IN_FLIGHT_BYTES) -> int:
    """Batches each worker prepares ahead: up to 4, fewer when large batches would exceed `budget`."""
    return max(1, min(4, budget // (batch_bytes * max(1, workers))))


def _fit_shared_memory(need: int, note: Callable[[str], None], *, shm: Path = SHM) -> None:
    """Workers hand batches over in /dev/shm; a container's default 64 MiB dies with a bus error mid-run.

    When it holds less than twice what is in flight, tensors travel through files instead (torch's
    file_system strategy: slower to set up per batch, but bounded by the disk, not /dev/shm).
    """
    try:
        free = shutil.disk_usage(shm).free
    except OSError:
        return  # no /dev/shm (not Linux): torch picks its own transport
    if free >= 2 * need or torch.multiprocessing.get_sharing_strategy() == "file_system":
        return
    torch.multiprocessing.set_sharing_strategy("file_system")
    note(f"{shm} has {free >> 20} MiB free, less than the {2 * need >> 20} MiB the decode workers need: "
         "passing batches through files instead (for full speed: docker run --shm-size=8g, or fewer --workers)")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(cuda: bool) -> int:
    """CUDA: worker processes decode on every core (up to 8) while the GPU runs the model.

    CPU: none. The model's intra-op threads already use every core, so a worker process decoding at
    the same time takes a core away from them mid-matmul instead of overlapping for free; decoding
    each batch on one thread per core between two forward passes keeps both phases at full width.
    Measured on 2 cores, ViT-Tiny fp32, batch 64 (bench/extract.py --sweep): workers 0 with threaded
    decode ~45 img/s, workers 0 single-threaded ~41, workers 1 ~42, workers 2 ~42 (and 1-2 fall
    furthest behind when other processes load the machine).
    """
    return min(8, _cpus()) if cuda else 0
