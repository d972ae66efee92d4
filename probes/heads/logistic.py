"""``LogisticHead``: multinomial L2 logistic regression solved to convergence, its penalty chosen on val."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probes.denormals import flush_denormals
from probes.heads.base import ProbeHead
from probes.default_grids import DEFAULT_GRIDS
from probes.heads.device import cpu_threads_for, resolve_device, resolve_dtype
from probes.heads.inputs import as_source, check_classes, encode_val
from probes.heads.params import Param
from probes.heads.registry import register_head
from probes.linear.design import Design, SolverOptions
from probes.linear.eigenbasis import eigenbasis
from probes.linear.path import Fit, LamPath
from probes.linear.ridge import ridge_scores
from probes.linear.search import grid_logistic, search_logistic
from probes.sources.base import TrainSource

# Ridge regularisation grid (relative to the mean covariance eigenvalue, which is 1).
RIDGE_ALPHAS = [10 ** (k / 2) for k in range(-6, 7)]
# Logistic strengths as lam * n_classes: the softmax curvature at uniform probabilities is
# ~1/K, so lam * K compares the penalty with the data term whatever the number of classes.
LAM_K_GRID = [10 ** (k / 2) for k in range(4, -13, -1)]
LAM_K_START = 10.0
# Shrinkage ladder: ridge's choice times 10^k, up to where the penalty is plain L2.
SHRINK_STEP, SHRINK_MAX = 10.0, 1e4

_POSITIVE = {"low": 0.0, "open_low": True}


@dataclass
class _Solution:
    """What one solve produced, before it becomes the head's fitted attributes."""

    fit: Fit
    design: Design
    n: int
    d: int
    selection: list[dict[str, Any]]
    ridge_path: list[dict[str, float]]


@register_head("logistic", streams=True, grid=DEFAULT_GRIDS["logistic"])
class LogisticHead(ProbeHead):
    """Multinomial L2 logistic regression solved to convergence, its regularisation chosen on val.

    The penalty is ``lam/2 tr(W^T (S + shrink I) W)`` on normalised features (S their
    covariance; see ``probes.linear``): ``shrink -> inf`` is ordinary L2, small ``shrink``
    measures weights in the data's own metric. ``C = 1 / (lam * n)`` as in scikit-learn.
    With ``C`` and ``shrink`` both set, one plain fit. Otherwise the free ones are chosen on
    the validation set passed to ``fit``: a closed-form ridge path seeds ``shrink``, then a
    warm-started L-BFGS search walks ``(shrink, C)`` (``linear.search.search_logistic``).
    Without a validation set, a stratified ``holdout`` fraction of train selects them and the
    head is refit on all of train. ``fit`` takes arrays or a ``TrainSource`` (streamed rows).
    """

    PARAMS = {
        "C": Param("float", "inverse penalty strength (None: chosen on val)", optional=True, **_POSITIVE),
        "Cs": Param("floats", "C values the search may visit (None: a log grid scaled by the class count)",
                    optional=True, **_POSITIVE),
        "shrink": Param("float", "penalty metric: small = data covariance, large = plain L2 (None: chosen)",
                        optional=True, **_POSITIVE),
        "standardize": Param("bool", "scale each feature to unit variance (default: one global scale)"),
        "tol": Param("float", "relative suboptimality at convergence", **_POSITIVE),
        "max_iter": Param("int", "L-BFGS iterations per point", low=1),
        "holdout": Param("float", "train fraction held out when no val split is given", low=0.0, high=1.0,
                         open_low=True, open_high=True),
        "device": Param("str", "where to compute", choices=("auto", "cpu", "cuda")),
        "precision": Param("str", "solver matmuls (auto: bf16 where fast and large)",
                           choices=("auto", "bf16", "fp32")),
        "seed": Param("int", "random seed (holdout split)", low=0),
    }

    def __init__(self, *, C: float | None = None, Cs: list[float] | None = None,
                 shrink: float | None = None, standardize: bool = False, tol: float = 3e-4,
                 max_iter: int = 200, holdout: float = 0.1, device: str = "auto",
                 precision: str = "auto", seed: int = 0) -> None:
        self.C, self.Cs, self.shrink, self.standardize = C, Cs, shrink, standardize
        self.tol, self.max_iter, self.holdout = tol, max_iter, holdout
        self.device, self.precision, self.seed = device, precision, seed

    def fit(self, X: Any, y: Any = None, *, X_val: Any = None, y_val: Any = None) -> LogisticHead:
        """Fit on arrays ``(X, y)`` or on a ``TrainSource`` ``X``; select on ``(X_val, y_val)``."""
        self._fit(X, y, X_val, y_val, grid=None)
        return self

    def fit_grid(self, X: Any, y: Any = None, *, X_val: Any, y_val: Any,
                 grid: dict[str, list[float]]) -> list[dict[str, Any]]:
        """A sweep that can only help: every ``(C, shrink)`` of ``grid`` (an axis left out keeps the
        head's value, else 1.0) and every point the default search visits, on one eigenbasis; the
        best on val (top-1, then calibrated loss) is kept and this head's C and shrink are set to it.
        One table row per point, the grid's first."""
        unknown = sorted(set(grid) - {"C", "shrink"})
        if unknown:
            raise ValueError(f"unknown grid parameter(s) {unknown} for the logistic head; valid: C, shrink")
        for name, values in grid.items():
            if not values:
                raise ValueError(f"empty sweep: {name} has no values")
            for value in values:
                self.PARAMS[name].check(name, value)
        Cs = [float(c) for c in grid.get("C", [self.C or 1.0])]
        shrinks = sorted({float(s) for s in grid.get("shrink", [self.shrink or 1.0])})
        self._fit(X, y, X_val, y_val, grid=(Cs, shrinks))
        self.set_params(C=self.C_, shrink=self.shrink_)
        return self.selection_

    def refit_params(self) -> dict[str, Any]:
        """The chosen C and shrink, fixed: refitting on more rows needs no val split."""
        self._check_fitted()
        return {**self.get_params(), "C": self.C_, "shrink": self.shrink_}

    # --- fitting steps
    def _fit(self, X: Any, y: Any, X_val: Any, y_val: Any, *, grid: tuple | None) -> None:
        self.check_params()
        source = as_source(X, y)
        classes = check_classes(source.labels)
        owner = type(self).__name__
        val = encode_val(X_val, y_val, classes=classes, n_features=source.n_features, owner=owner)
        if grid is not None and val is None:
            raise ValueError("a grid needs X_val and y_val to compare its points")
        work = source.n * (source.n_features + 1) * len(classes)
        with flush_denormals(), torch.no_grad(), cpu_threads_for(work, resolve_device(self.device)):
            if val is None and (self.C is None or self.shrink is None):
                train, Xh, yh = source.holdout(self.holdout, self.seed)
                held = encode_val(Xh, yh, classes=classes, n_features=source.n_features, owner=owner)
                chosen = self._solve(train, classes, held, grid=None, fixed=None)
                C = 1.0 / (chosen.fit.lam * chosen.n)  # scikit-learn's convention: C, not lam, carries over
                solution = self._solve(source, classes, None, grid=None, fixed=(C, chosen.fit.shrink))
                solution.selection, solution.ridge_path = chosen.selection, chosen.ridge_path
            else:
                solution = self._solve(source, classes, val, grid=grid, fixed=None)
        self._set_fitted(solution, classes)

    def _solve(self, source: TrainSource, classes: np.ndarray, val: tuple | None, *,
               grid: tuple | None, fixed: tuple[float, float] | None) -> _Solution:
        device = resolve_device(self.device)
        stats = source.statistics(device)
        n, d, k = stats.n, stats.d, len(classes)
        options = SolverOptions(dtype=resolve_dtype(self.precision, device, n * (d + 1) * k),
                                max_iter=self.max_iter, tol=self.tol)
        basis = eigenbasis(stats.mean, stats.second, standardize=self.standardize)
        val_t = None if val is None else (self._tensor(val[0]), self._tensor(val[1]))
        C, shrink = fixed or (self.C, self.shrink)

        def design(base: float) -> Design:
            return source.design(basis, base=base, classes=classes, counts=stats.counts, val=val_t,
                                 dtype=options.dtype, device=device)

        if C is not None and shrink is not None and grid is None:
            data, lam = design(shrink), 1.0 / (C * n)
            fit = LamPath(data, shrink=shrink, theta=data.initial_theta(k), lam=lam, options=options).solve(lam)
            return _Solution(fit, data, n, d, [_row(fit, n, C)] if val is not None else [], [])
        accs = ridge_scores(basis, stats.xty, stats.counts, *val_t, RIDGE_ALPHAS, dtype=options.dtype)
        ridge = [{"alpha": a, "val_top1": acc} for a, acc in zip(RIDGE_ALPHAS, accs)]
        shrinks = self._shrinks(max(zip(accs, RIDGE_ALPHAS))[1])  # ties: the stronger shrinkage
        data = design(min(shrinks + (grid[1] if grid else [])))
        chosen, fits = search_logistic(data, n_classes=k, lams=self._lam_grid(n, k), shrinks=shrinks,
                                       start=LAM_K_START / k, options=options, search_tol=self.tol)
        if grid is not None:
            lams = sorted({1.0 / (c * n) for c in grid[0]}, reverse=True)
            best_grid, grid_fits = grid_logistic(data, n_classes=k, lams=lams, shrinks=grid[1],
                                                 options=options, search_tol=self.tol)
            fits = grid_fits + fits
            chosen = max((best_grid, chosen), key=lambda f: (f.val_top1, -f.val_loss))
        return _Solution(chosen, data, n, d, [_row(f, n) for f in fits], ridge)

    def _shrinks(self, best_alpha: float) -> list[float]:
        """The shrinkage ladder: the fixed value, or ridge's choice times 10^k up to plain L2."""
        if self.shrink is not None:
            return [float(self.shrink)]
        return [best_alpha * SHRINK_STEP ** i for i in range(20)
                if best_alpha * SHRINK_STEP ** i <= SHRINK_MAX * (1 + 1e-9)]

    def _lam_grid(self, n: int, k: int) -> list[float]:
        if self.C is not None:
            return [1.0 / (self.C * n)]
        if self.Cs is not None:
            return sorted({1.0 / (c * n) for c in self.Cs}, reverse=True)
        return [lam_k / k for lam_k in LAM_K_GRID]

    def _set_fitted(self, s: _Solution, classes: np.ndarray) -> None:
        """All fitted attributes in one step, after everything that could fail."""
        W, b = s.design.basis.to_raw(s.design.base, s.fit.theta)
        self._W, self._b = W.float(), b.float()
        self.__dict__.update(
            coef_=W.cpu().numpy(), intercept_=b.cpu().numpy(), C_=1.0 / (s.fit.lam * s.n),
            shrink_=s.fit.shrink, n_iter_=s.fit.n_iter, selection_=s.selection, ridge_path_=s.ridge_path,
            n_passes_=1 + getattr(s.design, "passes", 0), n_features_in_=s.d, classes_=classes)

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
        head._W, head._b = state["coef"].float(), state["intercept"].float()
        head.__dict__.update(coef_=head._W.numpy(), intercept_=head._b.numpy(), n_features_in_=head._W.shape[1],
                             C_=float(state["C"]), shrink_=float(state["shrink"]), classes_=cls._classes_from(state))
        return head


def _row(fit: Fit, n: int, C: float | None = None) -> dict[str, Any]:
    """One line of the selection table."""
    return {"C": C if C is not None else 1.0 / (fit.lam * n), "shrink": fit.shrink,
            "val_top1": fit.val_top1, "val_loss": fit.val_loss, "n_iter": fit.n_iter}



