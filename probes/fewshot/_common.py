"""What the few-shot heads share: input checks, L2 rows, text prototypes, a calibrated temperature, the head base."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


def l2rows(x: np.ndarray | torch.Tensor) -> Any:
    """Rows scaled to unit norm (zero rows stay zero): CLIP features are compared by cosine."""
    if isinstance(x, torch.Tensor):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """float32 [N, D] and int labels [N], or a ValueError that says what came."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"X must be a non-empty 2-D array [n_samples, n_features]; got shape {X.shape}")
    if y.shape != (len(X),):
        raise ValueError(f"y must have shape ({len(X)},); got {y.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X holds NaN or infinite values")
    return X, y


def text_prototypes(text: Any) -> tuple[np.ndarray, float | None]:
    """A TextSet (`.embeddings`, `.logit_scale`) or an array [K, D] / [K, T, D] -> unit prototypes [K, D], scale.

    Templates are averaged after normalising each one, then the mean is normalised again: the
    recipe of CLIP's notebook and open_clip's `build_zero_shot_classifier`.
    """
    if text is None:
        raise ValueError("this head needs class-name text embeddings: fit(X, y, text=TEXTSET or array [K, D] / [K, T, D])")
    emb = getattr(text, "embeddings", text)
    scale = getattr(text, "logit_scale", None)
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim == 2:
        emb = emb[:, None, :]
    if emb.ndim != 3 or emb.shape[0] < 2:
        raise ValueError(f"text embeddings must be [K, D] or [K, T, D] with K >= 2 classes; got shape {emb.shape}")
    return l2rows(l2rows(emb).mean(axis=1)).astype(np.float32), (float(scale) if scale is not None else None)


def check_text_labels(y: np.ndarray, n_classes: int, n_features: int, dim: int) -> np.ndarray:
    """Labels must index the text classes (0..K-1, the store's sorted order) and dims must agree."""
    if dim != n_features:
        raise ValueError(f"text embeddings have dim {dim} but X has {n_features} features; use the same CLIP model")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1} (one per text class); got {y.min()}..{y.max()}")
    return y


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The scalar t minimising the NLL of softmax(logits / t): calibrates, never changes the argmax."""
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(1)) - s[rows, y]))

    return float(np.exp(minimize_scalar(nll, bounds=(-7.0, 7.0), method="bounded").x))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_grid(name: str, value: Any, *, low: float, high: float | None = None, open_low: bool = False) -> None:
    """A parameter given as one value or a grid: non-empty, every value in range (one message for all heads)."""
    v = np.atleast_1d(np.asarray(value, dtype=float))
    bad_low = (v <= low) if open_low else (v < low)
    if len(v) == 0 or bad_low.any() or (high is not None and (v > high).any()):
        lo = f"> {low:g}" if open_low else f">= {low:g}"
        rng = f"in [{low:g}, {high:g}]" if high is not None else lo
        raise ValueError(f"{name} must be {rng} (a value or a non-empty grid); got {value}")


def check_cv_options(head: Any) -> None:
    """The options of the heads that select by CV inside the shots."""
    if head.n_folds < 2 or head.max_iter < 1 or head.cv_max_iter < 1:
        raise ValueError(f"n_folds must be >= 2, max_iter and cv_max_iter >= 1; got {head.n_folds}, "
                         f"{head.max_iter}, {head.cv_max_iter}")


def _key(name: str, value: Any) -> str:
    """A state key that says when the value was a number (restored as one, not as a 1-element array)."""
    return f"scalar:{name}" if np.ndim(value) == 0 else name


class FewShotHead(ClassifierMixin, BaseEstimator):
    """Base: subclasses define `_fit(X, y, text)` and `decision_function(X)`; probabilities are softmax of it."""

    needs_text = False

    def fit(self, X: Any, y: Any, *, text: Any = None) -> "FewShotHead":
        X, y = check_xy(X, y)
        self._validate_params_()
        self._fit(X, y, text)
        self.n_features_in_ = X.shape[1]
        return self

    def _validate_params_(self) -> None:
        """Subclasses check their parameters here, before any fitted state exists."""

    def _check_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape [n, {self.n_features_in_}]; got {X.shape}")
        return X

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(self.decision_function(X))

    # --- serialisation: what a saved run needs to predict again (`probes.load_run`)
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every fitted array and number (public attributes ending in `_`), as tensors for safetensors.

        Selection notes (strings) are not state: prediction never reads them."""
        check_is_fitted(self, "n_features_in_")
        state = {}
        for name, value in vars(self).items():
            if not name.endswith("_") or name.startswith("_"):
                continue
            if isinstance(value, tuple) and all(isinstance(v, (np.ndarray, float, int, np.number)) for v in value):
                for i, v in enumerate(value):
                    state[_key(f"{name}.{i}", v)] = torch.as_tensor(np.atleast_1d(v)).clone()
            elif isinstance(value, torch.Tensor):  # kept as a tensor by the head (k-NN keys): restored as one
                state[f"torch:{name}"] = value.detach().cpu().contiguous()
            elif isinstance(value, (np.ndarray, float, int, np.number)) and not isinstance(value, bool):
                state[_key(name, value)] = torch.as_tensor(np.atleast_1d(value)).clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], params: dict[str, Any]) -> "FewShotHead":
        head = cls(**params)
        parts: dict[str, dict[int, Any]] = {}
        for key, tensor in state.items():
            if key.startswith("torch:"):
                setattr(head, key[len("torch:"):], tensor)
                continue
            value = tensor.numpy()
            if key.startswith("scalar:"):  # safetensors keeps no 0-d arrays: numbers travel as shape (1,)
                key, value = key[len("scalar:"):], value.reshape(-1)[0].item()
            name, _, index = key.partition(".")
            if index:
                parts.setdefault(name, {})[int(index)] = value
            else:
                setattr(head, name, value)
        for name, items in parts.items():
            setattr(head, name, tuple(items[i] for i in sorted(items)))
        return head

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
