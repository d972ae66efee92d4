"""WiSE blend: a linear probe fine-tuned from the zero-shot head, its weights mixed back with the zero-shot weights."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from probes.fewshot._common import FewShotHead, check_cv_options, check_grid, l2rows
from probes.fewshot._select import cv_folds
from probes.fewshot._solver import fit_anchored_softmax
from probes.fewshot._text import text_problem


class WiseHead(FewShotHead):
    """Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT, CVPR 2022), Eq. 1:
    theta_alpha = (1 - alpha) theta_zs + alpha theta_ft, here for the linear-classifier variant
    (Sec. 2: only the head is fine-tuned, from the zero-shot head W_0 = T): logits = s x W_alpha^T + alpha b
    with W_alpha = (1 - alpha) T + alpha W_ft. Mixing the weights of a linear head is mixing its logits.
    W_ft minimises mean CE + lam ||W||^2 from W_0 (L-BFGS); alpha is selected by stratified CV within
    the shots (one probe fit per fold scores every alpha); with 1 shot per class the rule is alpha = 0.5
    (the paper's default mixing when no held-out data exists).

    Parameters
    ----------
    alpha : float or sequence, default (0, 0.1, 0.2, ..., 1.0) (each in [0, 1])
    lam : float, default 1e-4 (>= 0); the fine-tuned head's L2 penalty.
    logit_scale : float or None, default None; n_folds : int, default 3; max_iter : int, default 200;
    cv_max_iter : int, default 50 (L-BFGS iterations per fit inside CV); seed : int, default 0

    Fitted: `classes_`, `coef_` [K, D] (the blend), `intercept_`, `alpha_`, `logit_scale_`, `selection_`.
    """

    needs_text = True

    def __init__(self, *, alpha: float | Sequence[float] = tuple(np.round(np.linspace(0, 1, 11), 2)),
                 lam: float = 1e-4, logit_scale: float | None = None, n_folds: int = 3, max_iter: int = 200,
                 cv_max_iter: int = 50, seed: int = 0) -> None:
        self.alpha = alpha
        self.lam = lam
        self.logit_scale = logit_scale
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.cv_max_iter = cv_max_iter
        self.seed = seed

    def _validate_params_(self) -> None:
        check_grid("alpha", self.alpha, low=0.0, high=1.0)
        check_grid("lam", self.lam, low=0.0)
        check_cv_options(self)

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        p = text_problem(X, y, text, self.logit_scale)
        k, grid = len(p.t), [float(a) for a in np.atleast_1d(self.alpha)]

        def probe(idx: np.ndarray, max_iter: int, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
            return fit_anchored_softmax(p.x[idx], p.y[idx], k, scale=p.scale, lam=self.lam, init=p.t,
                                        max_iter=max_iter, tol=tol)

        folds = cv_folds(p.y, n_folds=self.n_folds, seed=self.seed) if len(grid) > 1 else None
        if len(grid) == 1:
            alpha, how = grid[0], "fixed"
        elif folds is None:
            alpha, how = 0.5, "rule (k too small for cv: alpha = 0.5)"
        else:
            acc = np.zeros(len(grid))
            for tr, te in folds:
                w, b = probe(tr, min(self.max_iter, self.cv_max_iter), tol=1e-5)
                for j, a in enumerate(grid):
                    z = p.x[te] @ ((1 - a) * p.t + a * w).T * p.scale + a * b
                    acc[j] += (z.argmax(1) == p.y[te]).mean()
            alpha, how = grid[int(np.argmax(acc))], f"cv({len(folds)} folds)"
        w, b = probe(np.arange(len(p.y)), self.max_iter)
        self.coef_, self.intercept_ = (1 - alpha) * p.t + alpha * w, alpha * b
        self.alpha_, self.logit_scale_, self.selection_ = alpha, p.scale, how
        self.classes_ = np.arange(k)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.logit_scale_ * l2rows(self._check_X(X)) @ self.coef_.T + self.intercept_
