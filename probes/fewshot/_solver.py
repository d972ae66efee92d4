"""One convex problem behind the logistic, CLAP, text-anchored and WiSE heads: softmax CE + anchored L2, L-BFGS."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits


def fit_anchored_softmax(X: np.ndarray, y: np.ndarray, n_classes: int, *, scale: float = 1.0,
                         lam: float | np.ndarray = 0.0, anchor: np.ndarray | None = None,
                         init: np.ndarray | None = None, bias: bool = True,
                         max_iter: int = 200, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Minimise mean_i CE(scale * x_i W^T + b, y_i) + sum_k lam_k ||w_k - a_k||^2 over W [K, D] (and b).

    `anchor` None means a = 0 (plain L2-penalised logistic). `lam` is one number or one per class
    (CLAP's class-adaptive multipliers). Strictly convex when lam > 0, so the answer does not depend
    on `init` beyond the tolerance; `init` (e.g. the text prototypes) only saves iterations.
    scipy's L-BFGS-B on an analytic float64 gradient: few-shot problems are small, and per-call
    overhead (not flops) is what costs there; float64 lets tests check stationarity tightly.
    """
    x = np.asarray(X, dtype=np.float32)  # matmuls in float32 (2x faster), sums and the iterate in float64
    n, d = x.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    a = np.zeros((n_classes, d)) if anchor is None else np.asarray(anchor, dtype=np.float64)
    lam_k = np.broadcast_to(np.asarray(lam, dtype=np.float64), (n_classes,))[:, None]
    w0 = a if init is None else np.asarray(init, dtype=np.float64)
    theta0 = np.concatenate([w0.ravel(), np.zeros(n_classes if bias else 0)])

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[:n_classes * d].reshape(n_classes, d)
        z = scale * (x @ w.T.astype(np.float32)).astype(np.float64) + (theta[n_classes * d:] if bias else 0.0)
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        r = (np.exp(logp) - onehot) / n
        diff = w - a
        loss = -(logp * onehot).sum() / n + float((lam_k * diff ** 2).sum())
        gw = scale * (r.T.astype(np.float32) @ x).astype(np.float64) + 2 * lam_k * diff
        return loss, np.concatenate([gw.ravel(), r.sum(0) if bias else np.zeros(0)])

    with threadpool_limits(1, user_api="blas"):  # threaded BLAS inside L-BFGS-B's small updates costs 100x here
        res = minimize(f, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-13, "maxcor": 20})
    w = res.x[:n_classes * d].reshape(n_classes, d).astype(np.float32)
    b = res.x[n_classes * d:].astype(np.float32) if bias else np.zeros(n_classes, dtype=np.float32)
    return w, b


def anchored_objective(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, *, scale: float,
                       lam: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """The same objective in torch, for autograd checks (tests) of the analytic gradient's optimum."""
    ce = torch.nn.functional.cross_entropy(scale * x @ w.T + b, y)
    return ce + (lam * ((w - anchor) ** 2).sum(1)).sum()
