"""LP++: a linear probe on visual centroids plus a learned per-class blend of the text logits, steps from Lipschitz bounds."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from threadpoolctl import threadpool_limits

from probes.fewshot._common import FewShotHead, l2rows, softmax
from probes.fewshot._text import text_problem


def _residual(logits: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """d mean CE / d logits = (softmax - onehot) / N."""
    return (softmax(logits) - onehot) / len(onehot)


def lipschitz_bounds(x: torch.Tensor, z: torch.Tensor) -> tuple[float, float]:
    """Upper bounds on the curvature of mean CE in W and in alpha (the 1/L step sizes of LP++).

    The softmax Hessian block diag(p) - p p^T has spectral norm <= 1/2, so
    L_W <= lambda_max(X^T X) / (2N) and L_alpha <= max_k sum_i z_ik^2 / (2N), z_ik = x_i . t_k.
    """
    n = x.shape[0]
    l_w = float(torch.linalg.eigvalsh(x.T @ x / n).max()) / 2
    l_a = float((z ** 2).sum(0).max() / n) / 2
    return l_w, l_a


class LPPHead(FewShotHead):
    """Huang, Shakeri, Dolz, Ben Ayed, "LP++: A Surprisingly Strong Linear Probe for Few-Shot CLIP"
    (CVPR 2024), Eq. 4: logits_k(x) = x . w_k + alpha_k (x . t_k), W initialised at the class
    centroids of the shots, minimised by block-coordinate gradient descent with step 1/L per block,
    L the Lipschitz bound of the gradient (Sec. 3.3, Eq. 8-9).
    Simplified: alpha starts at one shared value alpha0 chosen by leave-one-out accuracy on the shots
    over a grid (the paper's data-driven init is per class), and L is the (looser) closed-form bound above,
    not the paper's; the iteration count is fixed.

    Parameters
    ----------
    iters : int, default 300 (>= 1); block-coordinate rounds (one W step and one alpha step each).
    alpha0 : float or None, default None (>= 0); None selects it on the shots from (1, 2, 5, 10, 20, 50)
        by leave-one-out (each shot against centroids that exclude it).

    Fitted: `classes_`, `coef_` [K, D], `alpha_` [K], `text_` [K, D], `step_sizes_`, `selection_`.
    """

    needs_text = True
    ALPHA_GRID = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)

    def __init__(self, *, iters: int = 300, alpha0: float | None = None) -> None:
        self.iters = iters
        self.alpha0 = alpha0

    def _validate_params_(self) -> None:
        if self.iters < 1 or (self.alpha0 is not None and self.alpha0 < 0):
            raise ValueError(f"need iters >= 1 and alpha0 >= 0 or None; got {self.iters}, {self.alpha0}")

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        p = text_problem(X, y, text, None)
        k, x = len(p.t), p.x
        onehot = np.eye(k, dtype=np.float32)[p.y]
        counts = onehot.sum(0)
        w = onehot.T @ x / np.maximum(counts, 1)[:, None]  # class centroids (zero for a class without shots)
        z = x @ p.t.T
        a0 = self.alpha0 if self.alpha0 is not None else self._alpha0(x, p.y, onehot, counts, w, z)
        alpha = np.full(k, float(a0), dtype=np.float32)
        l_w, l_a = lipschitz_bounds(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(z, dtype=torch.float64))
        with threadpool_limits(1, user_api="blas"):  # small matmuls: threads cost more than they give
            for _ in range(self.iters):
                w -= _residual(x @ w.T + alpha * z, onehot).T @ x / l_w
                alpha -= (_residual(x @ w.T + alpha * z, onehot) * z).sum(0) / l_a
        self.coef_, self.alpha_ = w.astype(np.float32), alpha.astype(np.float32)
        self.text_, self.step_sizes_ = p.t, (1 / l_w, 1 / l_a)
        self.selection_ = "rule (LP++: Lipschitz step sizes; alpha0 on the shots)" if self.alpha0 is None else "fixed"
        self.classes_ = np.arange(k)

    def _alpha0(self, x: np.ndarray, y: np.ndarray, onehot: np.ndarray, counts: np.ndarray, w: np.ndarray,
                z: np.ndarray) -> float:
        """alpha0 with the best leave-one-out accuracy on the shots: each shot's own centroid without it
        (none at 1 shot, so text decides). Ties go to the larger alpha: more text, the safer prior."""
        own = (counts[y] * (x @ w.T)[np.arange(len(y)), y] - 1.0) / np.maximum(counts[y] - 1, 1)  # x.x = 1
        vis = x @ w.T
        vis[np.arange(len(y)), y] = own
        accs = [float(((vis + a * z).argmax(1) == y).mean()) for a in self.ALPHA_GRID]
        return max(reversed(self.ALPHA_GRID), key=lambda a: accs[self.ALPHA_GRID.index(a)])

    def decision_function(self, X: Any) -> np.ndarray:
        x = l2rows(self._check_X(X))
        return x @ self.coef_.T + self.alpha_ * (x @ self.text_.T)
