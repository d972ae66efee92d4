"""A zero-shot-initialised logistic probe penalised towards the text prototypes, the strength chosen by CV."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from probes.fewshot._common import FewShotHead, check_cv_options, check_grid, l2rows
from probes.fewshot._select import select_by_cv
from probes.fewshot._solver import fit_anchored_softmax
from probes.fewshot._text import clap_multipliers, text_problem


class ZSLogisticHead(FewShotHead):
    """ELEVATER's text-initialised linear probe (Li et al., "ELEVATER", NeurIPS 2022 Datasets track,
    Sec. 4: `init_head_with_text_encoder`, W_0 = T) with an L2 penalty towards W_0 instead of towards 0
    (the "L2-SP" prior of Li, Grandvalet, Davoine, ICML 2018, Eq. 3, applied to the head):
        min_{W, b}  mean_i CE(s x_i W^T + b, y_i) + lam ||W - T||^2.
    lam is selected by stratified CV within the shots; with 1 shot per class (no CV possible) the
    rule is CLAP's class-adaptive lambda_k (see ClapHead).

    Parameters
    ----------
    lam : float or sequence, default (0.01, 0.03, 0.1, 0.3, 1) (> 0)
    logit_scale : float or None, default None (> 0)
    n_folds : int, default 3 (>= 2); max_iter : int, default 200; cv_max_iter : int, default 50
        (L-BFGS iterations per fit inside CV, warm-started along the grid); seed : int, default 0

    Fitted: `classes_`, `coef_` [K, D], `intercept_` [K], `lam_` (float or [K]), `logit_scale_`, `selection_`.
    """

    needs_text = True

    def __init__(self, *, lam: float | Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0),
                 logit_scale: float | None = None, n_folds: int = 3, max_iter: int = 200, cv_max_iter: int = 50,
                 seed: int = 0) -> None:
        self.lam = lam
        self.logit_scale = logit_scale
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.cv_max_iter = cv_max_iter
        self.seed = seed

    def _validate_params_(self) -> None:
        check_grid("lam", self.lam, low=0.0, open_low=True)
        check_cv_options(self)

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        p = text_problem(X, y, text, self.logit_scale)
        k = len(p.t)

        def solve(lam: Any, idx: np.ndarray, init: np.ndarray, tol: float = 1e-7,
                  max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
            return fit_anchored_softmax(p.x[idx], p.y[idx], k, scale=p.scale, lam=lam, anchor=p.t, init=init,
                                        max_iter=max_iter or self.max_iter, tol=tol)

        def score_path(grid: list[float], tr: np.ndarray, te: np.ndarray) -> list[float]:
            accs, w = [], p.t
            for lam in grid:  # strongest pull to the text first, each fit warm-started from the previous one
                w, b = solve(lam, tr, w, tol=1e-5, max_iter=self.cv_max_iter)
                accs.append(float(((p.x[te] @ w.T * p.scale + b).argmax(1) == p.y[te]).mean()))
            return accs

        grid = sorted((float(v) for v in np.atleast_1d(self.lam)), reverse=True)
        lam, how = select_by_cv(grid, score_path, p.y, n_folds=self.n_folds, seed=self.seed, default=None)
        if lam is None:
            lam, how = clap_multipliers(p), "rule (k too small for cv: CLAP's class-adaptive lambda)"
        self.coef_, self.intercept_ = solve(lam, np.arange(len(p.y)), p.t)
        self.lam_, self.logit_scale_, self.selection_ = lam, p.scale, how
        self.classes_ = np.arange(k)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.logit_scale_ * l2rows(self._check_X(X)) @ self.coef_.T + self.intercept_
