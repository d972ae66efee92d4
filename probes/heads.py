"""Classifier heads on cached features, with the scikit-learn contract: LogisticHead and MLPHead."""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probes import solvers

# Ridge regularisation grid (relative to the mean covariance eigenvalue, which is 1).
RIDGE_ALPHAS = [10 ** (k / 2) for k in range(-6, 7)]
# Logistic strengths as lam * n_classes: the softmax curvature at uniform probabilities is
# ~1/K, so lam * K compares the penalty with the data term whatever the number of classes.
LAM_K_GRID = [10 ** (k / 2) for k in range(4, -13, -1)]
LAM_K_START = 10.0
# Shrinkage ladder: ridge's choice times 10^k, up to where the penalty is plain L2.
SHRINK_STEP, SHRINK_MAX = 10.0, 1e4
# bf16 matmuls only pay off once one matmul is this many multiply-adds.
BF16_MIN_WORK = 2 ** 26


class NotFittedError(ValueError, AttributeError):
    """A head was used before ``fit`` (same bases as scikit-learn's)."""


# ----------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch only exposes these CPU feature checks privately; missing means "assume not".
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_dtype(precision: str, device: torch.device, work: int) -> torch.dtype:
    """Matmul dtype. ``"auto"`` is bf16 (fp32 accumulation) where the hardware has fast bf16
    and the matmuls are big enough to gain from it; fp32 otherwise."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if work >= BF16_MIN_WORK and _fast_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def check_features(X: Any, *, name: str = "X") -> np.ndarray:
    """A 2-D finite float32 array, or a ValueError that says what came instead."""
    X = np.asarray(X.detach().cpu() if isinstance(X, Tensor) else X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {X.shape}")
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


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): ``fraction`` of every class that has at least 2 samples."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        k = int(round(fraction * len(idx))) if len(idx) >= 2 else 0
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    train_idx, held_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
    if len(held_idx) == 0:
        raise ValueError("no class has 2 samples: cannot hold out a validation split; "
                         "pass X_val and y_val, or fix the hyper-parameters")
    return train_idx, held_idx


# ----------------------------------------------------------------------------- base


class _Head:
    """Parameters, input checks, label encoding, prediction and (de)serialisation shared by
    the heads. Subclasses implement ``fit`` and ``_logits`` (raw float32 tensor in, out)."""

    # --- scikit-learn parameter protocol (no sklearn import: it costs a second at startup)
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> _Head:
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {type(self).__name__}; "
                             f"valid: {self._param_names()}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- fitting helpers
    def _encode(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = check_features(X)
        y = check_labels(y, len(X))
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class ({self.classes_[0]!r}); "
                             "a classifier needs at least 2")
        self.n_features_in_ = X.shape[1]
        return X, codes.astype(np.int64)

    def _encode_val(self, X_val: Any, y_val: Any) -> tuple[np.ndarray, np.ndarray] | None:
        if X_val is None and y_val is None:
            return None
        if X_val is None or y_val is None:
            raise ValueError("X_val and y_val must be given together")
        X_val = self._check_width(check_features(X_val, name="X_val"), name="X_val")
        y_val = check_labels(y_val, len(X_val), name="y_val", x_name="X_val")
        unseen = np.setdiff1d(np.unique(y_val), self.classes_)
        if len(unseen):
            raise ValueError(f"y_val has labels not seen in y: {unseen[:10].tolist()}")
        return X_val, np.searchsorted(self.classes_, y_val).astype(np.int64)

    def _check_width(self, X: np.ndarray, *, name: str = "X") -> np.ndarray:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"{name} has {X.shape[1]} features, but {type(self).__name__} "
                             f"was fitted with {self.n_features_in_}")
        return X

    def _tensor(self, X: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(X)).to(resolve_device(self.device))

    # --- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    @torch.no_grad()
    def decision_function(self, X: Any) -> np.ndarray:
        """Raw class scores (logits), float32 [n, n_classes]."""
        self._check_fitted()
        X = self._check_width(check_features(X))
        return self._logits(self._tensor(X)).cpu().numpy()

    @torch.no_grad()
    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax probabilities, float32 [n, n_classes], columns in ``classes_`` order."""
        return torch.softmax(torch.from_numpy(self.decision_function(X)), 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        self._check_fitted()
        return self.classes_[self.decision_function(X).argmax(1)]

    def score(self, X: Any, y: Any) -> float:
        """Top-1 accuracy, as scikit-learn classifiers define ``score``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # --- serialisation: tensors only, so the dict goes straight into safetensors
    def _classes_state(self) -> dict[str, Tensor]:
        if np.issubdtype(self.classes_.dtype, np.integer):
            return {"classes": torch.from_numpy(self.classes_.astype(np.int64))}
        data = json.dumps([str(c) for c in self.classes_]).encode()
        return {"classes_json": torch.frombuffer(bytearray(data), dtype=torch.uint8)}

    @staticmethod
    def _classes_from(state: dict[str, Tensor]) -> np.ndarray:
        if "classes" in state:
            return state["classes"].cpu().numpy()
        return np.array(json.loads(bytes(state["classes_json"].cpu().numpy()).decode()))


# ----------------------------------------------------------------------------- logistic


class LogisticHead(_Head):
    """Multinomial L2 logistic regression solved to convergence, its regularisation chosen on val.

    The penalty is ``lam/2 tr(W^T (S + shrink I) W)`` on normalised features (S their
    covariance; see ``probes.solvers``): ``shrink -> inf`` is ordinary L2, small ``shrink``
    measures weights in the data's own metric. ``C = 1 / (lam * n)`` as in scikit-learn.
    With ``C`` and ``shrink`` both None, both are chosen on the validation set passed to
    ``fit``: a closed-form ridge path seeds ``shrink``, then a warm-started L-BFGS search walks
    ``(shrink, C)`` (``solvers.search_logistic``). Without a validation set, a stratified
    ``holdout`` fraction of train selects them and the head is refit on all of train.

    Parameters: ``C`` / ``shrink`` fix a value (no search on that axis); ``Cs`` replaces the
    default C grid; ``standardize`` scales each feature to unit variance first (default: one
    global scale, which keeps the features' relative scales); ``tol`` bounds the estimated
    suboptimality at convergence, relative to the objective (``solvers.minimize``);
    ``precision`` 'auto' | 'bf16' | 'fp32' for the solver's matmuls.
    """

    def __init__(self, *, C: float | None = None, Cs: list[float] | None = None,
                 shrink: float | None = None, standardize: bool = False, tol: float = 3e-4,
                 max_iter: int = 200, holdout: float = 0.1, device: str = "auto",
                 precision: str = "auto", seed: int = 0) -> None:
        self.C, self.Cs, self.shrink, self.standardize = C, Cs, shrink, standardize
        self.tol, self.max_iter, self.holdout = tol, max_iter, holdout
        self.device, self.precision, self.seed = device, precision, seed

    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None) -> LogisticHead:
        X, codes = self._encode(X, y)
        val = self._encode_val(X_val, y_val)
        self._check_options()
        if self.C is not None and self.shrink is not None:
            fit, data = self._fit_fixed(X, codes, val, C=self.C, shrink=self.shrink)
            self.selection_, self.ridge_path_ = [_row(fit, len(X), self.C)] if val else [], []
        elif val is None:
            fit, data = self._fit_with_holdout(X, codes)
        else:
            fit, data = self._select(X, codes, val)
        self._set_solution(fit, data, n=len(X))
        return self

    def fit_grid(self, X: Any, y: Any, *, X_val: Any, y_val: Any, Cs: list[float],
                 shrinks: list[float]) -> list[dict[str, Any]]:
        """Fit every ``(C, shrink)`` pair on one eigenbasis and one whitening (warm-started
        L-BFGS paths), keep the best on val (top-1, then calibrated loss); one row per pair."""
        X, codes = self._encode(X, y)
        val = self._encode_val(X_val, y_val)
        check_grid_args(val, Cs, shrinks)
        Xt, yt, val_t, basis = self._prepare(X, codes, val)
        options = self._options(len(X), X.shape[1])
        shrinks = sorted(set(shrinks))
        data = solvers.whiten_split(basis, Xt, yt, val_t, base=shrinks[0], dtype=options.dtype)
        lams = sorted({1.0 / (c * len(X)) for c in Cs}, reverse=True)
        chosen, fits = solvers.grid_logistic(data, n_classes=len(self.classes_), lams=lams,
                                             shrinks=shrinks, options=options,
                                             search_tol=self.tol)
        self.selection_, self.ridge_path_ = [_row(f, len(X)) for f in fits], []
        self._set_solution(chosen, data, n=len(X))
        return self.selection_

    def selected_params(self) -> dict[str, float]:
        """The chosen hyper-parameters, to refit the same model on more data."""
        self._check_fitted()
        return {"C": self.C_, "shrink": self.shrink_}

    # --- fitting steps
    def _check_options(self) -> None:
        for name in ("C", "shrink"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.Cs is not None and (len(self.Cs) == 0 or min(self.Cs) <= 0):
            raise ValueError(f"Cs must be a non-empty list of positive values, got {self.Cs!r}")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout!r}")

    def _options(self, n: int, d: int) -> solvers.SolverOptions:
        work = n * (d + 1) * len(self.classes_)
        dtype = resolve_dtype(self.precision, resolve_device(self.device), work)
        return solvers.SolverOptions(dtype=dtype, max_iter=self.max_iter, tol=self.tol)

    def _prepare(self, X: np.ndarray, codes: np.ndarray, val: tuple | None
                 ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None, solvers.Eigenbasis]:
        """Tensors on the device and the train eigenbasis (the one float64 eigh)."""
        Xt, yt = self._tensor(X), self._tensor(codes)
        val_t = None if val is None else (self._tensor(val[0]), self._tensor(val[1]))
        return Xt, yt, val_t, solvers.fit_eigenbasis(Xt, standardize=self.standardize)

    def _fit_fixed(self, X: np.ndarray, codes: np.ndarray, val: tuple | None, *, C: float,
                   shrink: float) -> tuple[solvers.Fit, solvers.Whitened]:
        Xt, yt, val_t, basis = self._prepare(X, codes, val)
        options = self._options(len(X), X.shape[1])
        data = solvers.whiten_split(basis, Xt, yt, val_t, base=shrink, dtype=options.dtype)
        lam = 1.0 / (C * len(X))
        theta = solvers.initial_theta(yt, X.shape[1], len(self.classes_))
        rung = solvers.Rung(data, shrink=shrink, theta=theta, lam=lam, options=options)
        return rung.solve(lam), data

    def _select(self, X: np.ndarray, codes: np.ndarray,
                val: tuple) -> tuple[solvers.Fit, solvers.Whitened]:
        Xt, yt, val_t, basis = self._prepare(X, codes, val)
        k, n = len(self.classes_), len(X)
        options = self._options(n, X.shape[1])
        accs = solvers.ridge_path(basis, Xt, yt, *val_t, RIDGE_ALPHAS, n_classes=k,
                                  dtype=options.dtype)
        self.ridge_path_ = [{"alpha": a, "val_top1": acc} for a, acc in zip(RIDGE_ALPHAS, accs)]
        best_alpha = max(zip(accs, RIDGE_ALPHAS))[1]  # ties: the stronger shrinkage
        shrinks = self._shrinks(best_alpha)
        lams = self._lam_grid(n, k)
        data = solvers.whiten_split(basis, Xt, yt, val_t, base=shrinks[0], dtype=options.dtype)
        chosen, fits = solvers.search_logistic(
            data, n_classes=k, lams=lams, shrinks=shrinks, start=LAM_K_START / k,
            options=options, search_tol=self.tol)
        self.selection_ = [_row(f, n) for f in fits]
        return chosen, data

    def _shrinks(self, best_alpha: float) -> list[float]:
        """The shrinkage ladder: the fixed value, or ridge's choice times 10^k up to plain L2."""
        if self.shrink is not None:
            return [self.shrink]
        return [best_alpha * SHRINK_STEP ** i for i in range(20)
                if best_alpha * SHRINK_STEP ** i <= SHRINK_MAX * (1 + 1e-9)]

    def _lam_grid(self, n: int, k: int) -> list[float]:
        if self.C is not None:
            return [1.0 / (self.C * n)]
        if self.Cs is not None:
            return sorted({1.0 / (c * n) for c in self.Cs}, reverse=True)
        return [lam_k / k for lam_k in LAM_K_GRID]

    def _fit_with_holdout(self, X: np.ndarray,
                          codes: np.ndarray) -> tuple[solvers.Fit, solvers.Whitened]:
        """Select on a stratified hold-out of train, then refit on all of it."""
        train, held = stratified_holdout(codes, self.holdout, self.seed)
        chosen, _ = self._select(X[train], codes[train], (X[held], codes[held]))
        C = 1.0 / (chosen.lam * len(train))  # scikit-learn's convention: C, not lam, carries over
        return self._fit_fixed(X, codes, None, C=C, shrink=chosen.shrink)

    def _set_solution(self, fit: solvers.Fit, data: solvers.Whitened, *, n: int) -> None:
        W, b = data.basis.to_raw(data.base, fit.theta)
        self.coef_ = W.cpu().numpy()
        self.intercept_ = b.cpu().numpy()
        self.C_ = 1.0 / (fit.lam * n)
        self.shrink_ = fit.shrink
        self.n_iter_ = fit.n_iter
        self._W, self._b = W.float(), b.float()

    def _logits(self, X: Tensor) -> Tensor:
        return torch.addmm(self._b.to(X.device), X, self._W.to(X.device).T)

    # --- serialisation
    def state_dict(self) -> dict[str, Tensor]:
        """Everything ``from_state_dict`` needs, as tensors (safetensors-ready)."""
        self._check_fitted()
        return {"coef": self._W.cpu(), "intercept": self._b.cpu(),
                "C": torch.tensor(self.C_, dtype=torch.float64),
                "shrink": torch.tensor(self.shrink_, dtype=torch.float64),
                **self._classes_state()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], params: dict[str, Any]) -> LogisticHead:
        head = cls(**params)
        head.classes_ = cls._classes_from(state)
        head._W, head._b = state["coef"].float(), state["intercept"].float()
        head.coef_, head.intercept_ = head._W.numpy(), head._b.numpy()
        head.n_features_in_ = head._W.shape[1]
        head.C_, head.shrink_ = float(state["C"]), float(state["shrink"])
        return head


def check_grid_args(val: Any, Cs: list[float], shrinks: list[float]) -> None:
    """A (C, shrink) grid needs a val split to compare its points and positive values on both axes."""
    if val is None:
        raise ValueError("a grid needs X_val and y_val to compare its points")
    if not Cs or not shrinks or min(Cs) <= 0 or min(shrinks) <= 0:
        raise ValueError(f"Cs and shrinks must be non-empty and positive, got {Cs!r}, {shrinks!r}")


def _row(fit: solvers.Fit, n: int, C: float | None = None) -> dict[str, Any]:
    """One line of the selection table."""
    return {"C": C if C is not None else 1.0 / (fit.lam * n), "shrink": fit.shrink,
            "val_top1": fit.val_top1, "val_loss": fit.val_loss, "n_iter": fit.n_iter}


# ----------------------------------------------------------------------------- mlp


class MLPHead(_Head):
    """An MLP (GELU, dropout, label smoothing), AdamW + OneCycleLR, early-stopped on val.

    What the seed reports found best on cached features. Inputs are standardised with train
    statistics. With ``early_stopping`` the weights of the best val epoch (top-1, ties to the
    lower loss) are kept; without a validation set a stratified ``holdout`` fraction of train
    plays that part (as scikit-learn's MLPClassifier does). ``hidden=()`` is a linear head.
    Training runs on ``solvers.train_stacked``, the same engine that sweeps many heads at once.
    """

    def __init__(self, *, hidden: tuple[int, ...] = (1024,), dropout: float = 0.5,
                 label_smoothing: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-2,
                 epochs: int = 30, batch_size: int = 256, early_stopping: bool = True,
                 patience: int = 5, holdout: float = 0.1, device: str = "auto",
                 precision: str = "auto", seed: int = 0) -> None:
        self.hidden, self.dropout, self.label_smoothing = hidden, dropout, label_smoothing
        self.lr, self.weight_decay = lr, weight_decay
        self.epochs, self.batch_size = epochs, batch_size
        self.early_stopping, self.patience, self.holdout = early_stopping, patience, holdout
        self.device, self.precision, self.seed = device, precision, seed

    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None) -> MLPHead:
        self.fit_grid(X, y, X_val=X_val, y_val=y_val, specs=[self._spec()])
        return self

    def fit_grid(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None,
                 specs: list[solvers.MLPSpec]) -> list[dict[str, Any]]:
        """Train one head per spec in one batched run; keep the best on val (top-1, then
        loss) and return one table row per spec."""
        X, codes = self._encode(X, y)
        val = self._encode_val(X_val, y_val)
        if val is None and self.early_stopping:
            train, held = stratified_holdout(codes, self.holdout, self.seed)
            X, codes, val = X[train], codes[train], (X[held], codes[held])
        self._set_scaler(X)
        options = self._train_options(max(max(s.hidden, default=0) for s in specs))
        Xt, yt = self._standardized(X), self._tensor(codes)
        val_t = None if val is None else (self._standardized(val[0]), self._tensor(val[1]))
        model = solvers.init_stacked(specs, X.shape[1], len(self.classes_), seed=self.seed,
                                     device=Xt.device)
        report = solvers.train_stacked(model, specs, solvers.TensorBatches(Xt, yt), val_t, options)
        return self._keep_best(model, specs, report, has_val=val is not None)

    def _keep_best(self, model: solvers.StackedMLP, specs: list[solvers.MLPSpec],
                   report: solvers.TrainReport, *, has_val: bool) -> list[dict[str, Any]]:
        """Keep the best head on val (top-1, then loss); one table row per spec."""
        best = int(torch.argmax(report.val_top1 - 1e-9 * report.val_loss)) if has_val else 0
        self.layers_ = model.head(best)
        self.best_epoch_, self.epochs_run_ = int(report.best_epoch[best]), report.epochs_run
        self.val_top1_, self.val_loss_ = float(report.val_top1[best]), float(report.val_loss[best])
        self.history_ = [(float(t[best]), float(l[best])) for t, l in report.history]
        return [{**_spec_row(s), "val_top1": float(report.val_top1[g]),
                 "val_loss": float(report.val_loss[g]), "best_epoch": int(report.best_epoch[g])}
                for g, s in enumerate(specs)]

    def selected_params(self) -> dict[str, Any]:
        """Nothing is selected beyond the given parameters (early stopping is per fit)."""
        self._check_fitted()
        return {}

    def _spec(self) -> solvers.MLPSpec:
        return solvers.MLPSpec(lr=float(self.lr), weight_decay=float(self.weight_decay),
                               hidden=as_widths(self.hidden), dropout=float(self.dropout))

    def _train_options(self, width: int) -> solvers.TrainOptions:
        d, k = self.n_features_in_, len(self.classes_)
        work = self.batch_size * (d * max(width, 1) + max(width, d) * k)
        dtype = resolve_dtype(self.precision, resolve_device(self.device), work)
        return solvers.TrainOptions(
            epochs=self.epochs, batch_size=self.batch_size, label_smoothing=self.label_smoothing,
            early_stopping=self.early_stopping, patience=self.patience, dtype=dtype, seed=self.seed)

    def _set_scaler(self, X: np.ndarray) -> None:
        self._set_scale(X.mean(0, dtype=np.float64), X.std(0, dtype=np.float64))

    def _set_scale(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Standardisation from train statistics; constant features get scale 0, not 1/0."""
        self.mean_ = np.asarray(mean, dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        self.scale_ = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0).astype(np.float32)

    def _standardized(self, X: np.ndarray) -> Tensor:
        return (self._tensor(X) - self._tensor(self.mean_)) * self._tensor(self.scale_)

    def _logits(self, X: Tensor) -> Tensor:
        h = (X - self._tensor(self.mean_).to(X.device)) * self._tensor(self.scale_).to(X.device)
        for i, (w, b) in enumerate(self.layers_):
            if i:
                h = torch.nn.functional.gelu(h)
            h = torch.addmm(b.to(X.device), h, w.to(X.device).T)
        return h

    # --- serialisation
    def state_dict(self) -> dict[str, Tensor]:
        self._check_fitted()
        state = {"mean": torch.from_numpy(self.mean_), "scale": torch.from_numpy(self.scale_)}
        for i, (w, b) in enumerate(self.layers_):
            state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = w.cpu(), b.cpu()
        return {**state, **self._classes_state()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], params: dict[str, Any]) -> MLPHead:
        head = cls(**params)
        head.classes_ = cls._classes_from(state)
        head.mean_, head.scale_ = state["mean"].numpy(), state["scale"].numpy()
        n_layers = sum(1 for k in state if k.startswith("layers.") and k.endswith(".weight"))
        head.layers_ = [(state[f"layers.{i}.weight"].float(), state[f"layers.{i}.bias"].float())
                        for i in range(n_layers)]
        head.n_features_in_ = head.layers_[0][0].shape[1]
        return head


def as_widths(hidden: Any) -> tuple[int, ...]:
    """Hidden widths from ``512``, ``(1024, 512)`` or ``()`` (a linear head)."""
    return (int(hidden),) if isinstance(hidden, (int, float)) else tuple(int(h) for h in hidden)


def _spec_row(spec: solvers.MLPSpec) -> dict[str, Any]:
    return {"lr": spec.lr, "weight_decay": spec.weight_decay, "hidden": spec.hidden,
            "dropout": spec.dropout}
