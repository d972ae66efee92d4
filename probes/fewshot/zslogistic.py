"""A zero-shot-initialised logistic probe penalised towards the text prototypes, the strength chosen by CV."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from probes.fewshot._common import FewShotHead, l2rows
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
    lam : float or sequence, default (0.01, 0.03, 0.1, 0.3, 1, 3, 10) (> 0)
    logit_scale : float or None, default None (> 0)
    n_folds : int, default 4 (>= 2); max_iter : int, default 200; seed : int, default 0

    Fitted: `classes_`, `coef_` [K, D], `intercept_` [K], `lam_` (float or [K]), `logit_scale_`, `selection_`.
    """

    needs_text = True

    def __init__(self, *, lam: float | Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
                 logit_scale: float | None = None, n_folds: int = 4, max_iter: int = 200, seed: int = 0) -> None:
        self.lam = lam
        self.logit_scale = logit_scale
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.seed = seed

    def _validate_params_(self) -> None:
        lams = np.atleast_1d(self.lam)
        if len(lams) == 0 or not lams.min() > 0 or self.n_folds < 2 or self.max_iter < 1:
            raise ValueError(f"need lam > 0 (or a non-empty grid), n_folds >= 2, max_iter >= 1; got "
                             f"{self.lam}, {self.n_folds}, {self.max_iter}")

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        p = text_problem(X, y, text, self.logit_scale)
        k = len(p.t)

        def solve(lam: Any, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return fit_anchored_softmax(p.x[idx], p.y[idx], k, scale=p.scale, lam=lam, anchor=p.t, init=p.t,
                                        max_iter=self.max_iter)

        def score(lam: float, tr: np.ndarray, te: np.ndarray) -> float:
            w, b = solve(lam, tr)
            return float(((p.x[te] @ w.T * p.scale + b).argmax(1) == p.y[te]).mean())

        lam, how = select_by_cv([float(v) for v in np.atleast_1d(self.lam)], score, p.y, n_folds=self.n_folds,
                                seed=self.seed, default=None)
        if lam is None:
            lam, how = clap_multipliers(p), "rule (k too small for cv: CLAP's class-adaptive lambda)"
        self.coef_, self.intercept_ = solve(lam, np.arange(len(p.y)))
        self.lam_, self.logit_scale_, self.selection_ = lam, p.scale, how
        self.classes_ = np.arange(k)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.logit_scale_ * l2rows(self._check_X(X)) @ self.coef_.T + self.intercept_
