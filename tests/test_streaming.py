"""Streaming logistic head: same accuracy as the in-memory head, chosen by the memory budget, round-trips."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

import featstore.importer as importer
from featstore.store import FeatureSetWriter, open_feature_set
from probes.data import ProbesError
from probes.heads import LogisticHead
from probes.streaming import StreamingLogisticHead, feature_set_blocks
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
    head = StreamingLogisticHead().fit_blocks(feature_set_blocks(fs), X_val=xv, y_val=yv)
    streamed = head.score(xv, yv)
    assert 0.6 < memory < 0.999  # a problem where the regulariser matters
    assert abs(streamed - memory) <= 0.005, (streamed, memory, head.selection_)
    assert head.n_features_in_ == D and list(head.classes_) == list(range(K))
    assert head.predict_proba(xv).shape == (len(xv), K)


def test_state_dict_round_trip(store):
    fs = open_feature_set("synth", cache=store / "cache")
    xv, yv = _arrays(fs, "val")
    head = StreamingLogisticHead(lam_ks=[1e-3], max_iter=10).fit_blocks(feature_set_blocks(fs), X_val=xv, y_val=yv)
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
    # 5000 x 32 x 4 B = 0.64 MB of train: a 0.1 MB budget streams
    small = fit_run(FitRequest(features=("synth",), device="cpu", memory_budget_gb=1e-4), cache=cache, runs=runs)
    assert "streaming (train 5000 rows x 32" in small.mode and "> budget" in small.mode
    assert abs(small.run.metrics["val_top1"] - big.run.metrics["val_top1"]) <= 0.005
    assert small.run.has("test") and small.run.has("val")
    monkeypatch.setenv("PROBES_MEMORY_GB", "0.0001")  # the environment sets the default budget
    assert streaming_reason(FitRequest(features=("synth",)), cache=cache) is not None
    assert streaming_reason(FitRequest(features=("synth",), memory_budget_gb=1.0), cache=cache) is None


def test_over_budget_mlp_and_unsupported_options_say_why(store, tmp_path):
    cache = store / "cache"
    with pytest.raises(ProbesError, match="mlp head trains in memory only.*--memory-gb"):
        fit_run(FitRequest(features=("synth",), head="mlp", memory_budget_gb=1e-4), cache=cache, runs=tmp_path)
    with pytest.raises(ProbesError, match="streaming does not support --sweep"):
        fit_run(FitRequest(features=("synth",), sweep=True, memory_budget_gb=1e-4), cache=cache, runs=tmp_path)
