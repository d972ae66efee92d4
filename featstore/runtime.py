"""Device and precision: one place that settles `auto`, and the batched forward that uses them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from featstore.compiled import compile_blocks
from featstore.encoders.preprocess import Preprocess
from featstore.errors import ExtractionError

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FP16_MAX = 65504.0


@dataclass(frozen=True)
class Runtime:
    """Where and how the encoder runs. precision is part of the store key (it changes the vectors)."""

    device: torch.device
    precision: str  # fp32 | fp16 | bf16

    @property
    def autocast(self) -> bool:
        return self.precision != "fp32"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """auto: CUDA when present; fp16 autocast on CUDA, fp32 on CPU (CPU fp16 is slow and inexact)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ExtractionError("--device cuda asked for, but torch sees no CUDA device (use --device cpu)")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ExtractionError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    dev = torch.device(device)
    if precision == "auto":
        precision = "fp16" if dev.type == "cuda" else "fp32"
    if precision not in _DTYPES:
        raise ExtractionError(f"--precision {precision!r}: expected auto, fp32, fp16 or bf16")
    if dev.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ExtractionError("--precision bf16: this GPU does not support bfloat16; use fp16")
    return Runtime(device=dev, precision=precision)


@contextmanager
def ieee_fp32(rt: Runtime) -> Iterator[None]:
    """fp32 means IEEE fp32: no TF32 in cuDNN convolutions (the patch embedding) or matmuls for the call.

    cuDNN allows TF32 by default, so a GPU "fp32" set would differ (~1e-3 relative) from a CPU one stored
    under the same key. The flags are process-wide: they are restored afterwards.
    """
    if rt.precision != "fp32":
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def prepare_model(model: torch.nn.Module, rt: Runtime, *, compile: bool = False) -> torch.nn.Module:
    model = model.to(rt.device)
    if rt.cuda:
        model = model.to(memory_format=torch.channels_last)
    return compile_blocks(model) if compile else model


@dataclass
class HostRows:
    """Outputs of one forward pass on their way to the host.

    On CUDA the float32 rows land in pinned buffers by a non-blocking copy queued behind the forward, so
    the loop thread goes on (next batch, previous rows to the writer) while the GPU works; `wait()` blocks
    only when the rows are needed. On the CPU they are there already (`done` is None).
    """

    rows: dict[str, torch.Tensor]
    multi: bool  # the model returned a dict (several outputs of one pass)
    done: torch.cuda.Event | None = None

    def wait(self) -> dict[str, torch.Tensor]:
        if self.done is not None:
            self.done.synchronize()
            self.done = None
        return self.rows


@torch.inference_mode()
def launch_batch(model: torch.nn.Module, batch_u8: torch.Tensor, preprocess: Preprocess, rt: Runtime) -> HostRows:
    """uint8 [B, C, H, W] (host, or on the device already) -> float32 [B, D] rows on their way to the host;
    normalisation runs on the device."""
    x = batch_u8.to(rt.device, non_blocking=rt.cuda)
    x = preprocess.normalize(x)
    if rt.cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    with ieee_fp32(rt), torch.autocast(rt.device.type, dtype=_DTYPES[rt.precision], enabled=rt.autocast):
        y = model(x)
    multi = isinstance(y, dict)  # several outputs of one pass (featstore.encoders.outputs)
    rows = {k: _host(v, rt) for k, v in (y.items() if multi else [("", y)])}
    done = None
    if rt.cuda:
        done = torch.cuda.Event()
        done.record()
    return HostRows(rows, multi, done)


def encode_batch(model: torch.nn.Module, batch_u8: torch.Tensor, preprocess: Preprocess,
                 rt: Runtime) -> torch.Tensor | dict[str, torch.Tensor]:
    """launch_batch, waited for: float32 [B, D] on the host (a dict of them for a multi-output model)."""
    out = launch_batch(model, batch_u8, preprocess, rt)
    rows = out.wait()
    return rows if out.multi else rows[""]


def _host(y: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if y.ndim != 2:
        raise ExtractionError(f"encoder returned shape {tuple(y.shape)}, expected [batch, dim]")
    if not rt.cuda:
        return y.float()
    buf = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
    return buf.copy_(y.float(), non_blocking=True)


def bad_rows(features: np.ndarray) -> np.ndarray:
    """Rows that are NaN/Inf, or that would overflow float16 in the store.

    numpy, not torch: on the host this is a [batch, dim] check on the loop thread, and torch would split
    it over its intra-op threads, which wait for each other whenever another process holds a core."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(features).all(axis=1) | (np.abs(features).max(axis=1, initial=0.0) > FP16_MAX)
