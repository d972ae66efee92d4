"""Plain multinomial logistic on unit-norm features, L2 strength chosen by CV inside the shots: the baseline."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from probes.fewshot._common import FewShotHead, check_cv_options, check_grid, l2rows
from probes.fewshot._select import select_by_cv
from probes.fewshot._solver import fit_anchored_softmax


class FewShotLogistic(FewShotHead):
    """Multinomial logistic regression, mean CE + lam ||W||^2 on L2-normalised features, bias unpenalised,
    solved to convergence with full-batch L-BFGS (torch, float64). The few-shot protocol's text-free
    linear probe; the redesigned `LogisticHead` of `probes fit` may replace it once merged.

    Parameters
    ----------
    lam : float or sequence of float, default logspace(-6, -1, 6) (>= 0). A grid is selected by
        stratified CV within the train rows; with < 2 rows in a class, the rule is lam = 1e-3.
    n_folds : int, default 3 (>= 2)
    max_iter : int, default 200 (>= 1); cv_max_iter : int, default 50 (L-BFGS iterations per fit inside
        CV, warm-started along the grid)
    seed : int, default 0

    Fitted: `classes_`, `coef_` [K, D], `intercept_` [K], `lam_`, `selection_`.
    """

    RULE_LAM = 1e-3

    def __init__(self, *, lam: float | Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), n_folds: int = 3,
                 max_iter: int = 200, cv_max_iter: int = 50, seed: int = 0) -> None:
        self.lam = lam
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.cv_max_iter = cv_max_iter
        self.seed = seed

    def _validate_params_(self) -> None:
        check_grid("lam", self.lam, low=0.0)
        check_cv_options(self)

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        classes, yi = np.unique(y, return_inverse=True)
        xn, k = l2rows(X), len(classes)

        def score_path(grid: list[float], tr: np.ndarray, te: np.ndarray) -> list[float]:
            accs, w = [], None
            for lam in grid:  # strongest penalty first, each fit warm-started from the previous one
                w, b = fit_anchored_softmax(xn[tr], yi[tr], k, lam=lam, init=w, tol=1e-5,
                                            max_iter=min(self.max_iter, self.cv_max_iter))
                accs.append(float(((xn[te] @ w.T + b).argmax(1) == yi[te]).mean()))
            return accs

        grid = sorted((float(v) for v in np.atleast_1d(self.lam)), reverse=True)
        self.lam_, self.selection_ = select_by_cv(grid, score_path, yi, n_folds=self.n_folds,
                                                  seed=self.seed, default=self.RULE_LAM)
        self.coef_, self.intercept_ = fit_anchored_softmax(xn, yi, k, lam=self.lam_, max_iter=self.max_iter)
        self.classes_ = classes

    def decision_function(self, X: Any) -> np.ndarray:
        return l2rows(self._check_X(X)) @ self.coef_.T + self.intercept_
