"""Input checks shared by the heads: arrays, labels, the val split, the train source."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from probes.sources.base import TrainSource
from probes.sources.memory import ArraySource


def check_features(X: Any, *, name: str = "X") -> np.ndarray:
    """A 2-D finite float32 array, or a ValueError that says what came instead."""
    X = np.asarray(X.detach().cpu() if isinstance(X, Tensor) else X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}. "
                         "Reshape your data: X.reshape(1, -1) for a single sample")
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] == 0:
            raise ValueError(f"{name} is empty: 0 {what}(s) (shape={X.shape}) while a minimum of 1 is required.")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def check_labels(y: Any, n: int, *, name: str = "y", x_name: str = "X") -> np.ndarray:
    y = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{x_name} and {name} have different lengths: {n} and {len(y)}")
    return y


def as_source(X: Any, y: Any) -> TrainSource:
    """``fit(X, y)`` with arrays, or ``fit(source)`` with a ``TrainSource`` (y then None)."""
    if isinstance(X, TrainSource):
        if y is not None:
            raise ValueError("fit(source) takes the labels from the source: pass y=None")
        return X
    if y is None:
        raise ValueError("y is required (or pass a TrainSource as X)")
    X = check_features(X)
    return ArraySource(X, check_labels(y, len(X)))


def check_classes(labels: np.ndarray) -> np.ndarray:
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least 2")
    return classes


def encode_val(X_val: Any, y_val: Any, *, classes: np.ndarray, n_features: int,
               owner: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The val split as (float32 features, class codes), checked against the train classes and width."""
    if X_val is None and y_val is None:
        return None
    if X_val is None or y_val is None:
        raise ValueError("X_val and y_val must be given together")
    X_val = check_width(check_features(X_val, name="X_val"), n_features, owner=owner, name="X_val")
    y_val = check_labels(y_val, len(X_val), name="y_val", x_name="X_val")
    unseen = np.setdiff1d(np.unique(y_val), classes)
    if len(unseen):
        raise ValueError(f"y_val has labels not seen in y: {unseen[:10].tolist()}")
    return X_val, np.searchsorted(classes, y_val).astype(np.int64)


def check_width(X: np.ndarray, n_features: int, *, owner: str, name: str = "X") -> np.ndarray:
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but {owner} was fitted with {n_features}")
    return X
