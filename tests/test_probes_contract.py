"""The heads as scikit-learn estimators, the registry, calibration, folds, the bf16 path."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils import estimator_checks as checks

from probes.calibration import apply_temperature, fit_temperature
from probes.folds import make_folds
from probes.heads import LogisticHead, MLPHead, create_head, get_head, head_names, head_parameters
from probes.metrics import expected_calibration_error

FAST_MLP = {"hidden": (16,), "epochs": 10, "batch_size": 64, "lr": 5e-2, "dropout": 0.0, "early_stopping": False}


def blobs(n: int = 200, d: int = 6, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return (rng.normal(size=(n, d)) + 2.5 * np.eye(k, d)[y]).astype(np.float32), y


HEADS = [LogisticHead(C=1.0, shrink=1.0), LogisticHead(), MLPHead(**FAST_MLP)]
IDS = ["logistic-fixed", "logistic-search", "mlp"]


@pytest.mark.parametrize("head", HEADS, ids=IDS)
def test_clone_cross_val_score_and_grid_search(head):
    X, y = blobs()
    assert clone(head).get_params() == head.get_params()
    scores = cross_val_score(head, X, y, cv=3)
    assert scores.min() > 0.65
    name = "C" if isinstance(head, LogisticHead) else "lr"
    grid = GridSearchCV(clone(head).set_params(shrink=1.0) if name == "C" else head,
                        {name: [0.1, 1.0] if name == "C" else [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert grid.best_estimator_.score(X, y) > 0.7


# The checks that state the contract we promise: parameters stored untouched, validated at fit,
# fitted attributes only after fit, n_features_in_, classes, idempotent fits. Skipped on purpose:
# the dtype/sparse/pandas/sample-weight checks (heads take dense float features, no weights), and
# the numeric quality checks (check_classifiers_train wants 0.83 on 3-row-per-class toy data).
CHECKS = ["check_no_attributes_set_in_init", "check_parameters_default_constructible", "check_get_params_invariance",
          "check_set_params", "check_dont_overwrite_parameters", "check_estimators_unfitted",
          "check_fit_score_takes_y", "check_n_features_in", "check_estimators_overwrite_params",
          "check_classifiers_classes", "check_fit_idempotent", "check_estimators_nan_inf", "check_fit2d_predict1d",
          "check_classifiers_one_label", "check_estimators_empty_data_messages", "check_methods_subset_invariance"]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("head", [HEADS[0], HEADS[2]], ids=["logistic", "mlp"])
def test_sklearn_estimator_checks(head, check):
    getattr(checks, check)(type(head).__name__, clone(head))


@pytest.mark.parametrize("params, message", [
    ({"C": -1.0}, r"C must be float in \(0, inf\) or None, got -1.0"),
    ({"C": float("nan")}, "C must be float in"),
    ({"tol": 0}, r"tol must be float in \(0, inf\)"),
    ({"precision": "fp8"}, "precision must be one of 'auto', 'bf16', 'fp32'"),
])
def test_bad_logistic_parameters_fail_before_touching_state(params, message):
    X, y = blobs()
    head = LogisticHead(C=1.0, shrink=1.0).fit(X, y)
    coef = head.coef_.copy()
    with pytest.raises(ValueError, match=message):
        head.set_params(**params).fit(X, 5 + y)  # new labels: a partial fit would mix them with old weights
    assert list(head.classes_) == [0, 1, 2] and np.array_equal(head.coef_, coef)


@pytest.mark.parametrize("params, message", [
    ({"epochs": -1}, r"epochs must be int in \[0, inf\)"),  # 0: the residual's logistic part alone
    ({"batch_size": -3}, "batch_size must be int in"),
    ({"dropout": 1.0}, r"dropout must be float in \[0, 1\)"),
    ({"hidden": (0,)}, "hidden must be int or tuple of ints"),
    ({"lr": True}, "lr must be float"),
])
def test_bad_mlp_parameters_name_the_range(params, message):
    X, y = blobs()
    with pytest.raises(ValueError, match=message):
        MLPHead(**{**FAST_MLP, **params}).fit(X, y)


def test_registry_lists_and_creates_heads():
    assert {"logistic", "mlp"} <= set(head_names())
    assert get_head("logistic").streams and get_head("mlp").uses_val
    with pytest.raises(ValueError, match="unknown head 'svm'; known: clap, knn, logistic, lpp, mlp"):
        get_head("svm")
    with pytest.raises(ValueError, match="unknown parameter.*momentum.*valid: .*lr"):
        create_head("mlp", momentum=0.9)
    rows = {r["name"]: r for r in head_parameters("logistic")}
    assert rows["C"]["default"] is None and "(0, inf)" in rows["C"]["valid"] and rows["C"]["grid"]


def test_a_plain_sklearn_estimator_registers_and_fits_through_fit_run(tmp_path):
    """What another engineer does to add a head: one decorator on a scikit-learn classifier."""
    from sklearn.neighbors import KNeighborsClassifier

    from probes.heads import registry

    @registry.register_head("knn_test", grid={"n_neighbors": [1, 5]})
    class KNNHead(KNeighborsClassifier):
        """k nearest neighbours (test head)."""

    try:
        from probes.sweep import sweep

        X, y = blobs()
        Xv, yv = blobs(seed=1)
        assert not get_head("knn_test").streams and not get_head("knn_test").uses_val
        res = sweep("knn_test", {"n_neighbors": [1, 15]}, X, y, Xv, yv)
        assert len(res.table) == 2 and res.best_params["n_neighbors"] == 15
    finally:
        registry._REGISTRY.pop("knn_test")


def test_temperature_fixes_an_underconfident_head():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 50)) * 3
    y = np.array([rng.choice(50, p=np.exp(r) / np.exp(r).sum()) for r in logits])
    cold = logits / 8  # an underconfident head: the true temperature is 1/8
    T = fit_temperature(cold - np.log(np.exp(cold).sum(1, keepdims=True)), y)
    assert T == pytest.approx(1 / 8, rel=0.1)
    before = expected_calibration_error(apply_temperature(cold, 1.0), y)
    after = expected_calibration_error(apply_temperature(cold, T), y)
    assert before > 0.1 and after < 0.05


def test_make_folds_stratifies_and_keeps_groups_together():
    y = np.repeat(np.arange(4), 30)
    groups = np.arange(len(y)) // 3  # e.g. near-duplicate clusters of 3 rows (same class)
    folds = make_folds(y, n_splits=5, groups=groups, seed=0)
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(len(y)))
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
        assert len(np.unique(y[va])) == 4
    plain = make_folds(y, n_splits=5, seed=0)
    assert len(plain) == 5 and all(len(va) == 24 for _, va in plain)
    with pytest.raises(ValueError, match="groups has 3 entries for 120 rows"):
        make_folds(y, n_splits=5, groups=groups[:3])


def test_bf16_solver_path_matches_fp32(monkeypatch):
    from probes.heads import device

    X, y = blobs(n=600, d=24, k=4)
    Xv, yv = blobs(n=300, d=24, k=4, seed=1)
    fp32 = LogisticHead(C=0.5, shrink=1.0, precision="fp32", device="cpu").fit(X, y)
    monkeypatch.setattr(device, "BF16_MIN_WORK", 1)  # "auto" now takes the bf16 path on this small problem
    monkeypatch.setattr(device, "fast_bf16", lambda dev: True)
    auto = LogisticHead(C=0.5, shrink=1.0, precision="auto", device="cpu")
    assert device.resolve_dtype("auto", device.resolve_device("cpu"), 10) is __import__("torch").bfloat16
    auto.fit(X, y)
    assert np.abs(auto.coef_ - fp32.coef_).max() <= 0.05 * np.abs(fp32.coef_).max()
    assert (auto.predict(Xv) == fp32.predict(Xv)).mean() >= 0.98
