"""Where a head computes and in which matmul precision (bf16 only where the hardware is fast at it)."""

from __future__ import annotations

import torch

# bf16 matmuls only pay off once one matmul is this many multiply-adds.
BF16_MIN_WORK = 2 ** 26


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 fast (a GPU with bf16 tensor cores, or a CPU with AVX512-BF16 / AMX).

    torch calls bf16 "supported" on pre-Ampere GPUs (compute capability < 8.0) too, where it is emulated
    and slower than fp32: those count as not fast.
    """
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return major >= 8 and torch.cuda.is_bf16_supported(including_emulation=False)
    # torch only exposes these CPU feature checks privately; missing means "assume not".
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


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
