"""The residual MLP head (a logistic head + an MLP that starts at zero) and its fp16 weights: never below
its start on val, streams, and a saved run reloads bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_streaming import store  # noqa: F401  (the shared feature-set fixture)

import probes
from probes.heads import LogisticHead, MLPHead
from probes.mlp.half import as_stored, round_to_half
from probes.sources.blocks import array_blocks
from probes.sources.store import BlockSource
from probes.train import FitRequest, fit_run

SMALL = {"hidden": (32,), "epochs": 4, "batch_size": 64, "lr": 3e-3, "device": "cpu"}


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X.astype(np.float32), y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def fitted(digits):
    X, Xv, y, yv = digits
    return MLPHead(**SMALL).fit(X, y, X_val=Xv, y_val=yv)


def test_residual_mlp_starts_at_the_logistic_head_and_never_ends_below_it(digits, fitted):
    X, Xv, y, yv = digits
    logistic = LogisticHead(device="cpu").fit(X, y, X_val=Xv, y_val=yv).score(Xv, yv)
    head = fitted
    start = head.history_[0][0]  # epoch 0: the linear part alone (fp16-rounded, sharpened by its val T)
    assert abs(start - logistic) <= 1.5 / len(yv), (start, logistic)
    assert head.val_top1_ >= start and len(head.history_) == head.epochs_run_ + 1
    assert head.score(Xv, yv) >= logistic - 1.5 / len(yv)
    plain = MLPHead(**SMALL, residual=False).fit(X, y, X_val=Xv, y_val=yv)
    assert plain.skip_ is None and len(plain.history_) == plain.epochs_run_ and plain.best_epoch_ >= 1


def test_fitted_weights_are_fp16_values_and_reload_bit_for_bit(digits, fitted, tmp_path):
    X, Xv, y, yv = digits
    head = fitted
    tensors = [t for layer in [*head.layers_, head.skip_] for t in layer]
    assert all(t.dtype == torch.float32 and torch.equal(t.half().float(), t) for t in tensors)
    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    state = load_file(str(tmp_path / "head.safetensors"))
    assert {state[k].dtype for k in state if k.startswith(("layers.", "skip."))} == {torch.float16}
    again = MLPHead.from_state_dict(state, head.get_params())
    assert np.array_equal(again.predict_proba(Xv), head.predict_proba(Xv))


def test_rounding_never_stores_an_infinity():
    t = torch.tensor([1.0, 1e-3, 1e6])
    assert torch.equal(round_to_half(t), t) and as_stored(t).dtype == torch.float32
    small = round_to_half(torch.tensor([0.1, -2.5e-3]))
    assert as_stored(small).dtype == torch.float16 and torch.equal(as_stored(small).float(), small)


def test_residual_mlp_trains_from_the_streaming_source():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(8, 16)) * 0.7
    y, yv = np.sort(rng.integers(0, 8, 1500)), rng.integers(0, 8, 600)
    x = (means[y] + rng.normal(size=(1500, 16))).astype(np.float32)
    xv = (means[yv] + rng.normal(size=(600, 16))).astype(np.float32)
    params = {**SMALL, "epochs": 2}
    memory = MLPHead(**params).fit(x, y, X_val=xv, y_val=yv)
    streamed = MLPHead(**params).fit(BlockSource(array_blocks(x, y, 500), 16), X_val=xv, y_val=yv)
    assert abs(streamed.score(xv, yv) - memory.score(xv, yv)) <= 0.02
    assert streamed.n_passes_ > 1 + streamed.epochs_run_  # the logistic start streamed its passes first


def test_a_saved_mlp_run_is_fp16_and_load_run_reproduces_its_test_probabilities(store, tmp_path):  # noqa: F811
    from featstore.store import open_feature_set

    params = {**{k: v for k, v in SMALL.items() if k != "device"}, "epochs": 1}
    res = fit_run(FitRequest(features=("synth",), head="mlp", device="cpu", params=params),
                  cache=store / "cache", runs=tmp_path)
    state = load_file(str(res.run.folder / "head.safetensors"))
    assert state["layers.0.weight"].dtype == state["skip.weight"].dtype == torch.float16
    test = open_feature_set("synth", cache=store / "cache").load("test")
    again = probes.load_run(res.run.id, runs=tmp_path).predict_proba(test.features)
    assert np.array_equal(again, res.run.predictions("test").probs)


def test_refit_keeps_the_chosen_epochs_and_the_linear_temperature(digits, fitted):
    X, Xv, y, yv = digits
    head = fitted
    params = head.refit_params()
    assert params["epochs"] == head.best_epoch_ and params["early_stopping"] is False
    assert params["linear_temperature"] == head.linear_temperature_ > 0
    # best epoch 0 (the logistic start won) refits with 0 epochs: the logistic part alone
    refit = MLPHead(**{**params, "epochs": 0}).fit(np.concatenate([X, Xv]), np.concatenate([y, yv]))
    assert refit.epochs_run_ == 0 and refit.linear_temperature_ == head.linear_temperature_
    assert refit.score(Xv, yv) >= head.score(Xv, yv) - 0.01
    with pytest.raises(ValueError, match="epochs must be at least 1 without residual"):
        MLPHead(epochs=0, residual=False).fit(X, y)
