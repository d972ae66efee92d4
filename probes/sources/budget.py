"""Whether a fit's train rows fit in memory: host RAM always, and the device's memory when fitting on one."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probes.heads.device import device_free_bytes

# Of the device memory free before the fit: the caching allocator, the solver's temporaries and the val
# rows need some slack, and running out mid-fit costs more than streaming.
DEVICE_HEADROOM = 0.9


def in_memory_bytes(head: str, *, rows: int, dim: int, classes: int) -> int:
    """What an in-memory fit holds at its peak, beyond the interpreter. Logistic: the float32 train, its
    bf16 whitened copy (twice: row- and column-major, ``Scratch.transposed``) and a few [rows, classes]
    float32 logits/probabilities (bench/probe_scale.py measured 6.4-7.7 KB per row at dim 768, 100
    classes, before the column-major copy added 1.5; this gives 9.3). MLP: the float32 train as
    loaded, its standardised copy and the loader's temporaries (measured 8.9 KB per row at dim 768
    between 200k and 1M rows; this gives 9.2)."""
    if head == "logistic":
        return rows * (10 * dim + 16 * classes)
    return rows * 12 * dim


@dataclass(frozen=True)
class Footprint:
    """Bytes an in-memory fit needs in host RAM and on the device (0 when it computes on the CPU)."""

    host: int
    device: int


def footprint(head: str, *, rows: int, dim: int, classes: int, device: torch.device) -> Footprint:
    """On the CPU everything is host memory. On a device the working copies (whitened rows, logits,
    standardised batches) live there, and the host keeps the float32 rows as loaded and normalised."""
    work = in_memory_bytes(head, rows=rows, dim=dim, classes=classes)
    if device.type == "cpu":
        return Footprint(host=work, device=0)
    return Footprint(host=2 * 4 * rows * dim, device=work)


def over_budget(head: str, *, rows: int, dim: int, classes: int, device: torch.device,
                host_budget: float) -> str | None:
    """Why an in-memory fit does not fit (host budget, or the device's free memory), or None when it does."""
    need = footprint(head, rows=rows, dim=dim, classes=classes, device=device)
    what = f"train {rows} rows x {dim}: an in-memory {head} fit needs ~"
    if need.host > host_budget:
        where = "" if device.type == "cpu" else " of host memory"
        return f"{what}{need.host / 1e9:.3g} GB{where} > budget {host_budget / 1e9:.3g} GB"
    free = device_free_bytes(device)
    if free is not None and need.device > DEVICE_HEADROOM * free:
        return (f"{what}{need.device / 1e9:.3g} GB on {device} > {DEVICE_HEADROOM:.0%} of the "
                f"{free / 1e9:.3g} GB free there")
    return None
