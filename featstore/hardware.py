"""What the hardware is fast at, for code that picks a matmul precision (the audit's screen, the probes' solver)."""

from __future__ import annotations

import torch


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 fast (a GPU with bf16 tensor cores, or a CPU with AVX512-BF16 /
    AMX). A CPU without them emulates bf16 matmuls slowly (1.8 GFLOP/s measured on an AMD EPYC, fp32 105);
    torch calls bf16 "supported" on pre-Ampere GPUs (compute capability < 8.0) too, where it is emulated
    and slower than fp32: those count as not fast."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return major >= 8 and torch.cuda.is_bf16_supported(including_emulation=False)
    # torch only exposes these CPU feature checks privately; missing means "assume not".
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)
