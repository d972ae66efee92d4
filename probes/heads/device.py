"""Where a head computes and in which matmul precision (bf16 only where the hardware is fast at it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from featstore.hardware import fast_bf16  # noqa: F401  (re-exported: the heads' and the bench's name)

# bf16 matmuls only pay off once one matmul is this many multiply-adds.
BF16_MIN_WORK = 2 ** 26
# Below this many multiply-adds per matmul a CPU solve runs on one thread (see ``cpu_threads_for``).
ONE_THREAD_MAX_WORK = 2 ** 26


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(precision: str, device: torch.device, work: int) -> torch.dtype:
    """Matmul dtype. ``"auto"`` is bf16 (fp32 accumulation) where the hardware has fast bf16
    and one matmul has at least ``BF16_MIN_WORK`` multiply-adds; fp32 otherwise."""
    if precision == "auto":
        return torch.bfloat16 if work >= BF16_MIN_WORK and fast_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def device_free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device (what the driver reports, other processes' use included); None for the CPU."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


@contextmanager
def cpu_threads_for(work: int, device: torch.device) -> Iterator[None]:
    """One torch thread inside when a CPU problem is small (one matmul under ``ONE_THREAD_MAX_WORK``
    multiply-adds); torch's setting is restored on exit. A small solve is thousands of tiny ops, each of
    which waits for every thread: on 2 cores shared with other jobs (load 9) the digits demo's search
    took 66-122 s with 2 threads and 3.1-3.3 s with one (0.5 CPU s against 16-29)."""
    if device.type != "cpu" or work >= ONE_THREAD_MAX_WORK or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
