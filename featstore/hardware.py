"""What the hardware is fast at, for code that picks a matmul precision (the audit's screen, the probes' solver)."""

from __future__ import annotations

import torch


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 fast (CUDA with bf16, or a CPU with AVX512-BF16 / AMX). A CPU
    without them emulates bf16 matmuls slowly (1.8 GFLOP/s measured on an AMD EPYC, fp32 105)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch only exposes these CPU feature checks privately; missing means "assume not".
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)
