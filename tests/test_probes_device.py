"""Probes on a GPU, decided on the CPU with the device queries faked: memory budget, bf16, fp16 widening."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.heads import device as dev
from probes.sources import budget
from probes.sources.blocks import Buffers

CUDA = torch.device("cuda")  # only a name here: every query about it is faked


@pytest.mark.parametrize(("capability", "native", "fast"), [((7, 0), False, False), ((7, 5), True, False),
                                                             ((8, 0), True, True), ((9, 0), True, True)])
def test_emulated_bf16_is_not_fast(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], native: bool,
                                   fast: bool) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # torch's default (including_emulation=True) says yes on every GPU of the last years
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native)
    assert dev.fast_bf16(CUDA) is fast
    assert dev.resolve_dtype("auto", CUDA, dev.BF16_MIN_WORK) == (torch.bfloat16 if fast else torch.float32)


def _free(monkeypatch: pytest.MonkeyPatch, gb: float | None) -> None:
    monkeypatch.setattr(budget, "device_free_bytes", lambda device: None if device.type == "cpu" else int(gb * 1e9))


def test_a_large_train_fits_in_a_large_gpu_but_not_in_the_host_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """1M x 1408, 500 classes: ~22 GB of working copies. On an 80 GB GPU they go there and the host keeps the
    11 GB of float32 rows; on the CPU the same 16 GB budget streams."""
    _free(monkeypatch, 80)
    shape = dict(rows=1_000_000, dim=1408, classes=500)
    assert budget.over_budget("logistic", **shape, device=CUDA, host_budget=16e9) is None
    on_cpu = budget.over_budget("logistic", **shape, device=torch.device("cpu"), host_budget=16e9)
    assert on_cpu == "train 1000000 rows x 1408: an in-memory logistic fit needs ~22.1 GB > budget 16 GB"
    host = budget.over_budget("logistic", **shape, device=CUDA, host_budget=4e9)
    assert host == "train 1000000 rows x 1408: an in-memory logistic fit needs ~11.3 GB of host memory > budget 4 GB"


def test_a_train_over_the_free_device_memory_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 16)  # a 24 GB card with 8 GB in use by another process
    shape = dict(rows=1_000_000, dim=1408, classes=500)
    reason = budget.over_budget("logistic", **shape, device=CUDA, host_budget=64e9)
    assert reason == ("train 1000000 rows x 1408: an in-memory logistic fit needs ~22.1 GB on cuda > 90% of the "
                      "16 GB free there")
    assert budget.over_budget("mlp", rows=100_000, dim=1408, classes=500, device=CUDA, host_budget=64e9) is None


def test_streaming_reason_asks_the_device_the_request_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from probes import train

    class FakeSet:
        dim, classes = 1408, list(range(500))

        def count(self, split: str) -> int:
            return 1_000_000

    monkeypatch.setattr("featstore.store.open_feature_set", lambda ref, cache=None: FakeSet())
    asked: list[torch.device] = []
    monkeypatch.setattr(budget, "device_free_bytes", lambda device: asked.append(device) or 80e9)
    req = train.FitRequest(features=("x",), device="cuda", memory_budget_gb=16)
    assert train.streaming_reason(req) is None and asked == [CUDA]
    assert train.streaming_reason(train.FitRequest(features=("x",), device="cpu", memory_budget_gb=16)) is not None


def test_streamed_fp16_rows_are_widened_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The meta device stands in for a GPU: the fp16 block must reach it as fp16 and become fp32 there."""
    copies: list[tuple[str, torch.dtype]] = []
    real = torch.Tensor.copy_
    monkeypatch.setattr(torch.Tensor, "copy_", lambda self, src, *a, **k: copies.append((src.device.type, src.dtype))
                        or real(self, src, *a, **k))
    meta = torch.device("meta")
    x = Buffers(8, torch.float32, meta).load(np.ones((5, 8), np.float16), torch.zeros(8, device=meta))
    assert x.dtype == torch.float32 and x.device == meta and copies == [("meta", torch.float16)]
    copies.clear()
    cpu = Buffers(8, torch.float32, torch.device("cpu")).load(np.ones((5, 8), np.float16), torch.zeros(8))
    assert copies == [("cpu", torch.float16)] and torch.equal(cpu, torch.ones(5, 8))  # the CPU path as before
