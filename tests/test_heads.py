"""LogisticHead, MLPHead and sweeps: known answers, real features, seeds, round trips, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from probes.heads import LogisticHead, MLPHead, NotFittedError
from probes.sweep import sweep

FAST_MLP = {"hidden": (32,), "epochs": 15, "batch_size": 64, "lr": 1e-2, "dropout": 0.1}


def separable(n: int = 240, d: int = 20, k: int = 3, *, seed: int = 0):
    """Classes far apart along their own directions: a linear head must be perfect."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[np.arange(n), y] += 8.0
    return X, y


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.mark.parametrize("head", [LogisticHead(), MLPHead(**FAST_MLP)], ids=["logistic", "mlp"])
def test_linearly_separable_is_solved(head):
    X, y = separable()
    Xv, yv = separable(seed=1)
    head.fit(X, y, X_val=Xv, y_val=yv)
    assert head.score(Xv, yv) == 1.0
    assert head.predict_proba(Xv).dtype == np.float32
    assert np.allclose(head.predict_proba(Xv).sum(1), 1.0, atol=1e-5)


def test_digits_logistic_matches_sklearn_with_c_chosen_on_val(digits):
    from sklearn.linear_model import LogisticRegression

    X, Xv, y, yv = digits
    from threadpoolctl import threadpool_limits

    sk = LogisticRegression(max_iter=1000, warm_start=True)  # a warm path: same fits, sooner
    # One BLAS thread: on a tiny problem, threads fighting over 2 shared cores cost 20-50x.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # lbfgs iteration warnings at large C
        reference = max(sk.set_params(C=c).fit(X, y).score(Xv, yv) for c in np.logspace(-3, 1, 9))
    head = LogisticHead().fit(X, y, X_val=Xv, y_val=yv)
    assert head.score(Xv, yv) >= reference - 0.005
    assert head.selection_ and {"C", "shrink", "val_top1", "val_loss"} <= set(head.selection_[0])


def test_no_validation_set_uses_a_holdout_and_refits(digits):
    X, Xv, y, yv = digits
    head = LogisticHead().fit(X, y)
    assert head.score(Xv, yv) > 0.95
    assert head.coef_.shape == (10, 64) and head.C_ > 0 and head.shrink_ > 0


def test_fixed_hyper_parameters_need_no_validation():
    X, y = separable()
    head = LogisticHead(C=1.0, shrink=1.0).fit(X, y)
    assert head.C_ == pytest.approx(1.0) and head.shrink_ == 1.0
    assert {k: head.refit_params()[k] for k in ("C", "shrink")} == {"C": pytest.approx(1.0), "shrink": 1.0}


@pytest.mark.parametrize("make", [lambda: LogisticHead(), lambda: MLPHead(**FAST_MLP)],
                         ids=["logistic", "mlp"])
def test_same_seed_same_head(make):
    X, y = separable(d=8)
    Xv, yv = separable(d=8, seed=1)
    a = make().fit(X, y, X_val=Xv, y_val=yv)
    b = make().fit(X, y, X_val=Xv, y_val=yv)
    assert np.array_equal(a.decision_function(Xv), b.decision_function(Xv))


@pytest.mark.parametrize("head", [LogisticHead(), MLPHead(**FAST_MLP)], ids=["logistic", "mlp"])
def test_state_dict_round_trip_through_safetensors(head, tmp_path):
    X, y = separable(d=8)
    labels = np.array(["cat", "dog", "owl"])[y]
    head.fit(X, labels, X_val=X, y_val=labels)
    save_file(head.state_dict(), tmp_path / "head.safetensors")
    again = type(head).from_state_dict(load_file(tmp_path / "head.safetensors"), head.get_params())
    assert np.array_equal(again.predict_proba(X), head.predict_proba(X))
    assert list(again.predict(X[:5])) == list(head.predict(X[:5]))
    assert list(again.classes_) == ["cat", "dog", "owl"]


def test_mlp_keeps_its_best_epoch():
    X, y = separable(d=8)
    head = MLPHead(**{**FAST_MLP, "patience": 2, "residual": False}).fit(X, y, X_val=X, y_val=y)
    assert 1 <= head.best_epoch_ <= head.epochs_run_
    assert head.val_top1_ == max(top1 for top1, _ in head.history_)


def test_sweep_picks_the_sensible_learning_rate():
    X, y = separable(d=8)
    Xv, yv = separable(d=8, seed=1)
    res = sweep("mlp", {"lr": [1e-9, 1e-2], "hidden": [16, 32]}, X, y, Xv, yv,
                base_params={"epochs": 10, "batch_size": 64, "residual": False})  # the MLP alone learns
    assert res.best_params["lr"] == 1e-2
    assert len(res.table) == 4 and {"lr", "hidden", "val_top1", "val_loss"} <= set(res.table[0])
    assert res.best_head.score(Xv, yv) == 1.0


def test_logistic_sweep_avoids_the_absurd_penalty():
    X, y = separable()
    Xv, yv = separable(seed=1)
    res = sweep("logistic", {"C": [1e-7, 1.0], "shrink": [0.1, 10.0]}, X, y, Xv, yv)
    assert res.best_params["C"] > 1e-3  # not the absurd one (the default search's points compete too)
    assert {(round(r["C"], 9), r["shrink"]) for r in res.table[:4]} == {(1.0, 0.1), (1e-7, 0.1), (1.0, 10.0), (1e-7, 10.0)}
    assert res.best_head.score(Xv, yv) == 1.0


@pytest.mark.parametrize("grid, message", [
    ({}, "empty sweep"),
    ({"lr": []}, "empty sweep"),
    ({"momentum": [0.9]}, "valid: lr, weight_decay, hidden, dropout"),
])
def test_sweep_grid_errors(grid, message):
    X, y = separable()
    with pytest.raises(ValueError, match=message):
        sweep("mlp", grid, X, y, X, y)


def test_sweep_unknown_head_kind():
    with pytest.raises(ValueError, match="unknown head 'svm'; known: clap, knn, logistic, lpp, mlp"):
        sweep("svm", {"C": [1.0]}, np.zeros((4, 2)), [0, 1, 0, 1], None, None)


def test_input_errors_say_what_was_expected():
    X, y = separable(d=128)
    head = LogisticHead()
    with pytest.raises(ValueError, match="2-D array"):
        head.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="different lengths: 240 and 239"):
        head.fit(X, y[:-1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        head.fit(np.where(X > 3, np.nan, X), y)
    with pytest.raises(ValueError, match="single class"):
        head.fit(X, np.zeros(len(X)))
    expected = "X_val has 64 features, but LogisticHead was fitted with 128"
    with pytest.raises(ValueError, match=expected):
        head.fit(X, y, X_val=X[:, :64], y_val=y)
    with pytest.raises(ValueError, match="y_val has labels not seen in y"):
        head.fit(X, y, X_val=X, y_val=y + 5)
    with pytest.raises(ValueError, match="together"):
        head.fit(X, y, X_val=X)


def test_unfitted_head_and_wrong_width_at_predict():
    X, y = separable()
    with pytest.raises(NotFittedError, match="not fitted"):
        MLPHead().predict(X)
    head = LogisticHead(C=1.0, shrink=1.0).fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but LogisticHead was fitted with 20"):
        head.predict(X[:, :5])


def test_params_follow_the_sklearn_contract():
    head = MLPHead(lr=3e-3)
    assert head.get_params()["lr"] == 3e-3 and "hidden" in head.get_params()
    assert head.set_params(lr=1e-2).lr == 1e-2
    with pytest.raises(ValueError, match="Invalid parameter 'learning_rate'.*Valid parameters are"):
        head.set_params(learning_rate=1.0)
    assert repr(MLPHead(hidden=(64,))) == "MLPHead(hidden=(64,))"
