"""Streaming MLP head: every row once per epoch in class-mixed minibatches, in-memory accuracy, CLI dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_streaming import store  # noqa: F401  (the shared feature-set fixture)

from probes.heads import MLPHead
from probes.mlp.batches import ShuffledBlocks
from probes.sources.blocks import array_blocks
from probes.sources.store import BlockSource
from probes.train import FitRequest, fit_run

# the MLP alone (residual=False): these tests check its minibatches and passes (tests/test_mlp_residual.py: residual)
FAST = {"hidden": (64,), "epochs": 12, "batch_size": 128, "lr": 3e-3, "dropout": 0.1, "device": "cpu", "residual": False}


def _sorted_blobs(n: int, k: int = 10, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Classes in contiguous runs, as a store written in id order holds them."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(0).normal(size=(k, d)) * 0.6
    y = np.sort(rng.integers(0, k, n))
    return (means[y] + rng.normal(size=(n, d)) + 5.0).astype(np.float32), y


def test_each_epoch_sees_every_row_once_in_class_mixed_batches():
    x, y = _sorted_blobs(3000)
    x[:, 0] = np.arange(len(x))  # a row id in column 0 (mean 0, scale 1 below: passes unchanged)
    batches = ShuffledBlocks(array_blocks(x, y, 700), classes=np.arange(10), mean=torch.zeros(16),
                             scale=torch.ones(16), seed=0, chunk_rows=50, window_chunks=8)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        seen, sizes, mixed = [], [], []
        for xb, yb in batches.epoch(128, gen):
            seen += xb[:, 0].long().tolist()
            sizes.append(len(xb))
            mixed.append(len(torch.unique(yb)))
            assert torch.equal(yb, torch.from_numpy(y[xb[:, 0].long().numpy()]))  # labels travel with rows
        assert sorted(seen) == list(range(3000))
        assert sizes[:-1] == [128] * (len(sizes) - 1) and len(sizes) == -(-3000 // 128)
        assert np.mean(mixed) >= 5  # 50-row chunks of sorted data hold 1-2 classes; windows of 8 mix them
    assert batches.epochs == 2


def test_streamed_mlp_matches_in_memory_accuracy():
    x, y = _sorted_blobs(4000)
    xv, yv = _sorted_blobs(1000, seed=1)
    memory = MLPHead(**FAST).fit(x, y, X_val=xv, y_val=yv).score(xv, yv)
    head = MLPHead(**FAST).fit(BlockSource(array_blocks(x, y, 500), 16), X_val=xv, y_val=yv)
    assert 0.6 < memory < 0.995
    assert abs(head.score(xv, yv) - memory) <= 0.02, (head.score(xv, yv), memory)
    assert head.n_passes_ == 1 + head.epochs_run_ and 1 <= head.best_epoch_ <= head.epochs_run_
    np.testing.assert_allclose(head.mean_, x.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(1 / head.scale_, x.std(0), rtol=1e-4)
    with pytest.raises(ValueError, match="streamed train rows hold nothing out: pass X_val and y_val"):
        MLPHead(**FAST).fit(BlockSource(array_blocks(x, y, 500), 16))
    unstopped = MLPHead(**{**FAST, "early_stopping": False, "epochs": 2}).fit(BlockSource(array_blocks(x, y, 500), 16))
    assert unstopped.epochs_run_ == 2


def test_fit_run_streams_the_mlp_over_budget(store, tmp_path):  # noqa: F811
    cache, runs = store / "cache", tmp_path / "runs"
    params = {k: v for k, v in FAST.items() if k != "device"}
    memory = fit_run(FitRequest(features=("synth",), head="mlp", device="cpu", params=params), cache=cache, runs=runs)
    small = fit_run(FitRequest(features=("synth",), head="mlp", device="cpu", params=params, memory_budget_gb=1e-4,
                               final=True), cache=cache, runs=runs)
    assert "in memory" in memory.mode
    assert "streaming (train 5000 rows x 32: an in-memory mlp fit" in small.mode and "refit on train+val" in small.mode
    assert abs(small.run.metrics["val_top1"] - memory.run.metrics["val_top1"]) <= 0.02
    assert small.run.has("test")


def test_streamed_mlp_sweep_trains_the_grid_in_one_read(store, tmp_path):  # noqa: F811
    params = {k: v for k, v in FAST.items() if k not in ("device", "lr")}
    res = fit_run(FitRequest(features=("synth",), head="mlp", sweep=True, grid={"lr": [1e-5, 3e-3]}, device="cpu",
                             params=params, memory_budget_gb=1e-4), cache=store / "cache", runs=tmp_path)
    assert "sweep on val, streaming" in res.mode
    assert [row["lr"] for row in res.table] == [1e-5, 3e-3] and res.run.config["params"]["lr"] == 3e-3
    assert res.table[1]["val_top1"] > res.table[0]["val_top1"]
