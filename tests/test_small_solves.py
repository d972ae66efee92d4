"""Solver speed paths that must not change results: small solves on one thread, the bf16 design kept column-major too."""

from __future__ import annotations

import numpy as np
import torch

from probes.heads import LogisticHead
from probes.heads import device as device_mod
from probes.heads.device import ONE_THREAD_MAX_WORK, cpu_threads_for

CPU = torch.device("cpu")


def test_threads_follow_the_work_and_are_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu_threads_for(ONE_THREAD_MAX_WORK - 1, CPU):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads_for(ONE_THREAD_MAX_WORK, CPU):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_small_logistic_fit_solves_on_one_thread(monkeypatch):
    seen = []
    real = device_mod.cpu_threads_for

    def spy(work, device):
        seen.append(work)
        return real(work, device)

    import probes.heads.logistic as logistic_mod

    monkeypatch.setattr(logistic_mod, "cpu_threads_for", spy)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 16)).astype(np.float32), rng.integers(0, 4, 200)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = LogisticHead(C=1.0, shrink=1.0).fit(X, y)
        assert seen == [200 * 17 * 4] and torch.get_num_threads() == 2
        device_mod.ONE_THREAD_MAX_WORK, saved = 0, device_mod.ONE_THREAD_MAX_WORK  # the same fit on 2 threads
        try:
            two = LogisticHead(C=1.0, shrink=1.0).fit(X, y)
        finally:
            device_mod.ONE_THREAD_MAX_WORK = saved
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(one.coef_, two.coef_, rtol=1e-4, atol=1e-5)


def test_bf16_gradient_uses_one_column_major_copy_and_the_same_math():
    from probes.linear.objective import Scratch

    z = torch.randn(300, 17).to(torch.bfloat16)
    scratch = Scratch()
    t = scratch.transposed(z)
    assert t.is_contiguous() and torch.equal(t, z.T) and scratch.transposed(z) is t  # made once per design
    assert not Scratch().transposed(z.float()).is_contiguous()  # fp32 keeps the view (no speed to gain)
    p = torch.randn(300, 5).to(torch.bfloat16)
    torch.testing.assert_close((t @ p).float(), (z.T @ p).float(), rtol=1e-2, atol=1e-2)
