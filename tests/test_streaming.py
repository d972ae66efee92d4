"""Streaming logistic head: the in-memory objective exactly, the same accuracy, chosen by the memory budget."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from featstore import importer
from featstore.store import FeatureSetWriter, open_feature_set
from probes.data import ProbesError
from probes.heads import LogisticHead
from probes.linear.design import whiten_split
from probes.linear.eigenbasis import fit_eigenbasis
from probes.linear.streamed import StreamedDesign
from probes.sources.blocks import array_blocks, feature_set_blocks
from probes.sources.store import BlockSource
from probes.train import FitRequest, fit_run, streaming_reason

K, D = 20, 32


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """20 Gaussian classes in 32 correlated dims, overlapping enough that accuracy is ~99%, not 100%."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(K, D))
    mix = rng.normal(size=(D, D)) / np.sqrt(D)
    r = np.random.default_rng(seed)
    y = r.integers(0, K, n)
    x = means[y] + 4.0 * r.normal(size=(n, D)) @ mix + 3.0
    return x.astype(np.float16).astype(np.float32), y  # what the fp16 store gives back


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A feature set with 5000 train rows in 500-row shards (10 blocks), plus val and test."""
    tmp = tmp_path_factory.mktemp("streaming")
    files = {}
    for split, n, seed in (("train", 5000, 1), ("val", 2000, 2), ("test", 300, 3)):
        x, y = _synthetic(n, seed)
        np.savez(tmp / f"{split}.npz", features=x, labels=y)
        files[split] = tmp / f"{split}.npz"
    mp = pytest.MonkeyPatch()
    mp.setattr(importer, "FeatureSetWriter", functools.partial(FeatureSetWriter, shard_rows=500))
    try:
        importer.import_arrays("synth", files, cache=tmp / "cache")
    finally:
        mp.undo()
    return tmp


def _arrays(fs, split):
    data = fs.load(split)
    return data.features, data.labels


def test_train_split_is_read_in_many_blocks(store):
    fs = open_feature_set("synth", cache=store / "cache")
    sizes = [len(x) for x, _ in feature_set_blocks(fs)()]
    assert len(sizes) == 10 and sum(sizes) == 5000 == fs.count("train")


def test_streamed_fit_matches_in_memory_accuracy(store):
    fs = open_feature_set("synth", cache=store / "cache")
    x, y = _arrays(fs, "train")
    xv, yv = _arrays(fs, "val")
    memory = LogisticHead(device="cpu").fit(x, y, X_val=xv, y_val=yv).score(xv, yv)
    head = LogisticHead().fit(BlockSource(feature_set_blocks(fs), D), X_val=xv, y_val=yv)
    streamed = head.score(xv, yv)
    assert 0.6 < memory < 0.999  # a problem where the regulariser matters
    assert abs(streamed - memory) <= 0.005, (streamed, memory, head.selection_)
    assert head.n_features_in_ == D and list(head.classes_) == list(range(K))
    assert head.predict_proba(xv).shape == (len(xv), K)


def _designs(n: int = 1500, block_rows: int = 256):
    """The same whitened problem in memory (``Whitened``) and streamed (``StreamedDesign``), fp32."""
    x, y = _synthetic(n, 5)
    xv, yv = _synthetic(300, 6)
    X, Y, Xv, Yv = (torch.from_numpy(a) for a in (x, y, xv, yv))
    basis = fit_eigenbasis(X)
    memory = whiten_split(basis, X, Y, (Xv, Yv), base=0.5, dtype=torch.float32)
    counts = torch.bincount(Y, minlength=K).double()
    streamed = StreamedDesign(array_blocks(x, y, block_rows), basis, base=0.5, classes=np.arange(K), counts=counts,
                              val=(Xv, Yv), dtype=torch.float32, device=torch.device("cpu"))
    return memory, streamed


def _problems(theta: torch.Tensor, lam: float = 0.02):
    memory, streamed = _designs()
    e = memory.basis.eigvals
    kw = {"weights": torch.cat([(e + 2.0) / (e + 0.5), e.new_zeros(1)])[:, None],
          "variance": torch.cat([e / (e + 0.5), e.new_ones(1)])[:, None]}
    return memory.problem(theta, lam, **kw), streamed.problem(theta, lam, **kw), streamed


def test_streamed_objective_equals_the_in_memory_one():
    theta = torch.randn(D + 1, K, generator=torch.Generator().manual_seed(0)) * 0.3
    mem, st, design = _problems(theta)
    assert design.passes == 1  # value, gradient and curvature from one read of the data
    assert st.value == pytest.approx(mem.value, rel=1e-5)
    torch.testing.assert_close(st.grad, mem.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(st.curvature, mem.curvature, rtol=0.05, atol=1e-4)  # mem samples rows
    assert st.suboptimality() == pytest.approx(mem.suboptimality(), rel=0.1)


def test_streamed_step_matches_and_backtracks_in_one_or_two_passes():
    theta = torch.randn(D + 1, K, generator=torch.Generator().manual_seed(1)) * 0.3
    mem, st, design = _problems(theta)
    p = -mem.grad * mem.inverse_hessian()  # a well-scaled descent direction: the whole step is taken
    before = design.passes
    (s_mem, y_mem), (s_st, y_st) = mem.step(p.clone()), st.step(p.clone())
    assert design.passes == before + 1
    torch.testing.assert_close(s_st, s_mem)
    assert st.value == pytest.approx(mem.value, rel=1e-5)
    torch.testing.assert_close(st.grad, mem.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(y_st, y_mem, rtol=1e-3, atol=1e-6)
    # a direction 40x too long: Armijo backtracks; the accepted point's gradient is exact
    p = -st.grad * st.inverse_hessian() * 40.0
    value = st.value
    s, _ = st.step(p)
    assert st.value < value and s.norm() < p.norm() / 2
    fresh = design.problem(st.theta, st.lam, weights=st.weights, variance=st.variance)
    assert st.value == pytest.approx(fresh.value, rel=1e-6)
    torch.testing.assert_close(st.grad, fresh.grad, rtol=1e-4, atol=1e-7)
    assert st.step(torch.zeros_like(p)) is None  # not a descent direction


def test_fixed_c_and_shrink_need_no_val_and_match_in_memory(store):
    fs = open_feature_set("synth", cache=store / "cache")
    x, y = _arrays(fs, "train")
    memory = LogisticHead(C=0.05, shrink=1.0, tol=1e-6, device="cpu", precision="fp32").fit(x, y)
    head = LogisticHead(C=0.05, shrink=1.0, tol=1e-6, device="cpu", precision="fp32")
    head.fit(BlockSource(feature_set_blocks(fs), D))
    np.testing.assert_allclose(head.coef_, memory.coef_, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(head.intercept_, memory.intercept_, rtol=1e-3, atol=2e-3)
    with pytest.raises(ValueError, match="pass X_val and y_val"):
        LogisticHead().fit(BlockSource(feature_set_blocks(fs), D))


def test_state_dict_round_trip(store):
    fs = open_feature_set("synth", cache=store / "cache")
    xv, yv = _arrays(fs, "val")
    head = LogisticHead(C=0.1, shrink=1.0, max_iter=10).fit(BlockSource(feature_set_blocks(fs), D), X_val=xv, y_val=yv)
    state = {k: v.clone() for k, v in head.state_dict().items()}
    again = LogisticHead.from_state_dict(state, {"device": "cpu"})
    np.testing.assert_allclose(again.predict_proba(xv), head.predict_proba(xv), rtol=1e-5, atol=1e-6)
    # the raw-feature weights reproduce the logits: x @ W.T + b
    np.testing.assert_allclose(head.decision_function(xv), xv @ head.coef_.T + head.intercept_, rtol=1e-4, atol=1e-3)
    assert isinstance(state["coef"], torch.Tensor) and state["coef"].shape == (K, D)


def test_fit_run_dispatches_on_the_memory_budget(store, tmp_path, monkeypatch):
    cache, runs = store / "cache", tmp_path / "runs"
    monkeypatch.delenv("PROBES_MEMORY_GB", raising=False)
    big = fit_run(FitRequest(features=("synth",), device="cpu"), cache=cache, runs=runs)
    assert "in memory" in big.mode and "streaming" not in big.mode
    # 5000 rows x (10 x 32 + 16 x 20) B = 3.2 MB for an in-memory logistic fit: a 0.1 MB budget streams
    small = fit_run(FitRequest(features=("synth",), device="cpu", memory_budget_gb=1e-4), cache=cache, runs=runs)
    assert "streaming (train 5000 rows x 32: an in-memory logistic fit needs ~0.0032 GB > budget 0.0001 GB" in small.mode
    assert abs(small.run.metrics["val_top1"] - big.run.metrics["val_top1"]) <= 0.005
    assert small.run.has("test") and small.run.has("val")
    monkeypatch.setenv("PROBES_MEMORY_GB", "0.0001")  # the environment sets the default budget
    assert streaming_reason(FitRequest(features=("synth",)), cache=cache) is not None
    assert streaming_reason(FitRequest(features=("synth",), memory_budget_gb=1.0), cache=cache) is None


def test_final_refit_streams_train_then_val(store, tmp_path):
    cache, runs = store / "cache", tmp_path / "runs"
    memory = fit_run(FitRequest(features=("synth",), device="cpu", final=True), cache=cache, runs=runs)
    streamed = fit_run(FitRequest(features=("synth",), device="cpu", final=True, memory_budget_gb=1e-4),
                       cache=cache, runs=runs)
    assert "refit on train+val" in streamed.mode and "streaming" in streamed.mode
    a, b = memory.run.predictions("test").probs, streamed.run.predictions("test").probs
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98
    assert streamed.run.config["final"] is True


def test_unsupported_streaming_options_say_why(store, tmp_path):
    cache = store / "cache"
    with pytest.raises(ProbesError, match="streaming does not support --cv; raise the budget"):
        fit_run(FitRequest(features=("synth",), head="mlp", cv=3, memory_budget_gb=1e-4), cache=cache, runs=tmp_path)
    with pytest.raises(ProbesError, match="streaming does not support --normalize standard"):
        fit_run(FitRequest(features=("synth",), normalize="standard", memory_budget_gb=1e-4), cache=cache,
                runs=tmp_path)


def test_streamed_logistic_sweep_equals_the_in_memory_sweep(store, tmp_path):
    cache, runs = store / "cache", tmp_path / "runs"
    grid = {"C": [0.01, 0.1], "shrink": [1.0]}
    memory = fit_run(FitRequest(features=("synth",), sweep=True, grid=grid, device="cpu"), cache=cache, runs=runs)
    streamed = fit_run(FitRequest(features=("synth",), sweep=True, grid=grid, device="cpu", memory_budget_gb=1e-4),
                       cache=cache, runs=runs)
    assert "sweep on val, streaming" in streamed.mode and len(streamed.table) == len(memory.table) > 2
    for a, b in zip(memory.table[:2], streamed.table[:2]):  # the grid's rows come first
        assert (a["C"], a["shrink"]) == pytest.approx((b["C"], b["shrink"]))
        assert abs(a["val_top1"] - b["val_top1"]) <= 0.005
    assert abs(streamed.run.metrics["val_top1"] - memory.run.metrics["val_top1"]) <= 0.005
