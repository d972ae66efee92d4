"""CLAP: a zero-shot-initialised linear probe held near the text prototypes by class-adaptive weights (validation-free)."""

from __future__ import annotations

from typing import Any

import numpy as np

from probes.fewshot._common import FewShotHead, l2rows
from probes.fewshot._solver import fit_anchored_softmax
from probes.fewshot._text import clap_multipliers, text_problem


class ClapHead(FewShotHead):
    """Silva-Rodriguez, Hajimiri, Ben Ayed, Dolz, "A Closer Look at the Few-Shot Adaptation of Large
    Vision-Language Models" (CVPR 2024), Eq. 5-6 (ZS-LP: W initialised at the text prototypes T,
    logits s x W^T) with the class-adaptive constraint of Sec. 4.3:
        min_W  mean_i CE(s x_i W^T, y_i) + sum_k lambda_k ||w_k - t_k||^2,
        lambda_k = mean over class k's shots of the zero-shot probability of class k.
    Simplified: the paper solves this with an augmented-Lagrangian SGD schedule on augmented images
    over 300 epochs; on cached features the problem is convex and solved to convergence by L-BFGS.

    Parameters
    ----------
    logit_scale : float or None, default None (> 0); None takes the text set's, else 100.
    strength : float, default 1.0 (> 0); multiplies every lambda_k (1.0 is the paper's rule).
    max_iter : int, default 200 (>= 1)

    Fitted: `classes_`, `coef_` [K, D], `multipliers_` [K], `logit_scale_`, `selection_`.
    """

    needs_text = True

    def __init__(self, *, logit_scale: float | None = None, strength: float = 1.0, max_iter: int = 200) -> None:
        self.logit_scale = logit_scale
        self.strength = strength
        self.max_iter = max_iter

    def _validate_params_(self) -> None:
        if not self.strength > 0 or self.max_iter < 1 or (self.logit_scale is not None and not self.logit_scale > 0):
            raise ValueError(f"need strength > 0, max_iter >= 1, logit_scale > 0 or None; got "
                             f"{self.strength}, {self.max_iter}, {self.logit_scale}")

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        p = text_problem(X, y, text, self.logit_scale)
        lam = self.strength * clap_multipliers(p)
        self.coef_, _ = fit_anchored_softmax(p.x, p.y, len(p.t), scale=p.scale, lam=lam, anchor=p.t, init=p.t,
                                             bias=False, max_iter=self.max_iter)
        self.multipliers_, self.logit_scale_ = lam, p.scale
        self.selection_ = "rule (CLAP: validation-free class-adaptive penalty)"
        self.classes_ = np.arange(len(p.t))

    def decision_function(self, X: Any) -> np.ndarray:
        return self.logit_scale_ * l2rows(self._check_X(X)) @ self.coef_.T
