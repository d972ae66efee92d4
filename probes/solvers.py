"""Linear-head numerics: a whitened eigenbasis, a closed-form ridge path and an L-BFGS logistic path.

The math, in one place (d features, C classes, n train rows):

* Standardise on train: ``x_s = (x - mean) * scale`` with ``scale = 1/std`` (0 for a
  constant feature). Its covariance ``S = V diag(e) V^T`` is eigendecomposed once, in float64.
* **Ridge path.** One-hot least squares on standardised features, ``W(a) = V diag(1/(e+a)) B``
  with ``B = V^T X_s^T Y / n``: every regularisation value ``a`` costs one small matmul, so a
  whole path is scored on val for the price of the eigendecomposition.
* **Whitened basis.** ``z = x_s V diag(e + eps)^-1/2``: the covariance of z is
  ``diag(e/(e+eps))``, close to the identity, so the softmax Hessian is well conditioned and
  L-BFGS needs tens of iterations instead of hundreds. The shrinkage ``eps`` is the ridge
  path's best value, which makes the basis data-driven and scale-free.
* **Logistic path.** Multinomial cross-entropy + ``lam/2 ||U||^2`` on the whitened weights
  ``U`` (bias unpenalised). In standardised coordinates this is the penalty
  ``lam * tr(W^T (S + eps I) W)``: an L2 penalty on the logits' train variance plus a plain L2
  term, i.e. ordinary L2 measured in the metric of the data. It is solved along a decreasing
  ``lam`` path, warm-started, keeping the L-BFGS curvature pairs across path values (the
  penalty Hessian is ``lam I``, so a pair's ``y`` moves by exactly ``dlam * s``).
* **Logits are linear in the weights**, so the solver keeps the train logits in float32 and
  updates them by ``t * Z @ p`` for a step ``t`` along a direction ``p``: one forward matmul per
  iteration whatever the line search tries, and the objective carries no bf16 rounding noise.
  The two matmuls per iteration (``Z @ p`` and ``Z^T (P - Y)``) may run in bf16.
* **Back to raw features.** ``logits = x @ W.T + b`` with
  ``W.T = diag(scale) V diag(e+eps)^-1/2 U`` and ``b = b_white - mean @ W.T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Relative variance below which a feature counts as constant (it gets scale 0, not 1/0).
_CONSTANT_VARIANCE = 1e-10
# Armijo sufficient-decrease constant and the most halvings a line search may try.
_ARMIJO = 1e-4
_MAX_BACKTRACKS = 20


@dataclass(frozen=True)
class Eigenbasis:
    """Standardisation and covariance eigendecomposition of the train features.

    ``eigvals`` are ascending and clamped at 0; ``eigvecs`` has orthonormal columns.
    """

    mean: Tensor
    scale: Tensor
    eigvals: Tensor
    eigvecs: Tensor

    def projector(self, shrink: float) -> Tensor:
        """``M`` such that ``(x - mean) @ M`` are whitened coordinates with shrinkage ``shrink``."""
        return (self.scale[:, None] * self.eigvecs) * (self.eigvals + shrink).rsqrt()

    def to_raw(self, shrink: float, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Map whitened weights ``theta = [U; b]`` ([d+1, C]) to raw ``(W [C, d], b [C])``."""
        wt = self.projector(shrink) @ theta[:-1]
        return wt.T.contiguous(), theta[-1] - self.mean @ wt


def fit_eigenbasis(X: Tensor) -> Eigenbasis:
    """Standardise and eigendecompose the train covariance (float32 product, float64 eigh).

    The covariance is formed in float32 on purpose: it defines the regulariser, and a bf16
    product would round every entry to 3 digits and invent eigenvalues around 0.05.
    """
    mean = X.mean(0)
    xc = X - mean
    cov = (xc.T @ xc) / X.shape[0]
    var = cov.diagonal().clone()
    scale = torch.where(var > _CONSTANT_VARIANCE * var.max().clamp_min(1e-30),
                        var.clamp_min(1e-30).rsqrt(), torch.zeros_like(var))
    corr = cov.double() * scale.double()[:, None] * scale.double()[None, :]
    eigvals, eigvecs = torch.linalg.eigh(corr)
    return Eigenbasis(mean, scale, eigvals.clamp_min(0).float(), eigvecs.float().contiguous())


def class_sums(X: Tensor, y: Tensor, n_classes: int) -> Tensor:
    """Per-class sums of the rows of X ([C, d]) in one scatter-add, i.e. ``Y^T X``."""
    return torch.zeros(n_classes, X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, y, X)


def ridge_path(basis: Eigenbasis, X: Tensor, y: Tensor, X_val: Tensor, y_val: Tensor,
               alphas: list[float], *, n_classes: int, dtype: torch.dtype) -> list[float]:
    """Val top-1 of one-hot ridge regression for every ``alpha``, from one eigendecomposition.

    Targets are one-hot and uncentred; features are centred, so the intercept is the class
    prior and the coefficients in the eigenbasis are ``B / (e + alpha)``.
    """
    n = X.shape[0]
    counts = torch.bincount(y, minlength=n_classes).to(X.dtype)
    xty = class_sums(X, y, n_classes) - counts[:, None] * basis.mean  # centred Y^T X, [C, d]
    vs = basis.scale[:, None] * basis.eigvecs
    b = (vs.T @ xty.T) / n  # [d, C]
    ev = ((X_val - basis.mean) @ vs).to(dtype)
    prior = counts / n
    accs = []
    for alpha in alphas:
        scores = (ev @ (b / (basis.eigvals + alpha)[:, None]).to(dtype)).float() + prior
        accs.append((scores.argmax(1) == y_val).float().mean().item())
    return accs


def whiten(basis: Eigenbasis, X: Tensor, shrink: float, *, dtype: torch.dtype) -> Tensor:
    """Whitened features with a trailing column of ones for the bias ([n, d+1], in ``dtype``)."""
    z = ((X - basis.mean).to(dtype) @ basis.projector(shrink).to(dtype))
    return torch.cat([z, torch.ones(len(z), 1, dtype=dtype, device=z.device)], 1)


def softmax_xent(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and softmax probabilities (float32) of ``logits``."""
    logp = torch.log_softmax(logits, 1)
    return -logp.gather(1, y[:, None]).mean(), logp.exp_()


@dataclass
class PathPoint:
    """One value of the logistic path: its solution and how it scores."""

    lam: float
    theta: Tensor
    train_loss: float
    val_top1: float = math.nan
    val_loss: float = math.nan
    n_iter: int = 0


@dataclass
class _Memory:
    """L-BFGS curvature pairs, kept across path values (see the module docstring)."""

    history: int
    s: list[Tensor] = field(default_factory=list)
    y: list[Tensor] = field(default_factory=list)

    def push(self, s: Tensor, y: Tensor) -> None:
        if (s * y).sum() > 1e-10 * (y * y).sum():  # keep the inverse Hessian positive definite
            self.s.append(s)
            self.y.append(y)
            if len(self.s) > self.history:
                del self.s[0], self.y[0]

    def shift(self, dlam: float, mask: Tensor) -> None:
        for s, y in zip(self.s, self.y):
            y.add_(mask * s, alpha=dlam)

    def direction(self, g: Tensor, fallback_scale: float) -> Tensor:
        """Two-loop recursion: ``-H g`` with H the L-BFGS inverse-Hessian estimate."""
        q, alphas = g.clone(), []
        for s, y in zip(reversed(self.s), reversed(self.y)):
            rho = 1.0 / (s * y).sum()
            a = rho * (s * q).sum()
            q.sub_(y, alpha=a.item())
            alphas.append((rho, a))
        if self.s:
            q.mul_(((self.s[-1] * self.y[-1]).sum() / (self.y[-1] ** 2).sum()).item())
        else:
            q.mul_(fallback_scale)
        for (s, y), (rho, a) in zip(zip(self.s, self.y), reversed(alphas)):
            q.add_(s, alpha=(a - rho * (y * q).sum()).item())
        return q.neg_()


class SoftmaxProblem:
    """Penalised multinomial cross-entropy on fixed whitened features, with cached logits.

    ``z`` is [n, d+1] (last column ones) in the matmul dtype; ``theta`` is [d+1, C] float32.
    """

    def __init__(self, z: Tensor, y: Tensor, theta: Tensor, lam: float) -> None:
        self.z, self.y, self.lam = z, y, lam
        self.mask = torch.ones_like(theta)
        self.mask[-1] = 0.0  # the bias row is not penalised
        self.theta = theta.clone()
        self.logits = self.forward(self.theta)
        self.matmuls = 1
        self.value, probs = self._objective(self.logits, self.theta)
        self.grad = self._gradient(probs)

    def forward(self, theta: Tensor) -> Tensor:
        return (self.z @ theta.to(self.z.dtype)).float()

    def _penalty(self, theta: Tensor) -> Tensor:
        return 0.5 * self.lam * ((self.mask * theta) ** 2).sum()

    def _objective(self, logits: Tensor, theta: Tensor) -> tuple[float, Tensor]:
        loss, probs = softmax_xent(logits, self.y)
        return (loss + self._penalty(theta)).item(), probs

    def _gradient(self, probs: Tensor) -> Tensor:
        """``Z^T (P - Y) / n + lam * mask * theta``; (P - Y) is small near the optimum and is
        rounded to bf16 as a whole, so the gradient keeps its relative precision."""
        probs[torch.arange(len(self.y), device=probs.device), self.y] -= 1.0
        self.matmuls += 1
        g = (self.z.T @ probs.to(self.z.dtype)).float() / len(self.y)
        return g.add_(self.mask * self.theta, alpha=self.lam)

    def set_lam(self, lam: float) -> None:
        """Move along the path without a matmul: value and gradient are updated in closed form."""
        dlam, self.lam = lam - self.lam, lam
        self.value += 0.5 * dlam * ((self.mask * self.theta) ** 2).sum().item()
        self.grad.add_(self.mask * self.theta, alpha=dlam)

    def step(self, p: Tensor) -> tuple[Tensor, Tensor] | None:
        """Backtracking Armijo line search along ``p``; updates the state, returns (s, dgrad)."""
        p = p.to(self.z.dtype).float()  # the step the bf16 logits really take
        lp = self.forward(p)
        self.matmuls += 1
        slope = (self.grad * p).sum().item()
        if slope >= 0:
            return None
        t = 1.0
        for _ in range(_MAX_BACKTRACKS):
            value, probs = self._objective(self.logits + t * lp, self.theta + t * p)
            if value <= self.value + _ARMIJO * t * slope:
                break
            t *= 0.5
        else:
            return None
        self.theta.add_(p, alpha=t)
        self.logits.add_(lp, alpha=t)
        self.value, old_grad = value, self.grad
        self.grad = self._gradient(probs)
        return p * t, self.grad - old_grad


def minimize(problem: SoftmaxProblem, memory: _Memory, *, max_iter: int, tol: float) -> int:
    """L-BFGS until the objective's relative decrease falls under ``tol``; returns iterations."""
    for it in range(1, max_iter + 1):
        before = problem.value
        scale = 1.0 / max(problem.grad.abs().max().item(), 1e-12)  # first step moves <= 1 unit
        pair = problem.step(memory.direction(problem.grad, min(1.0, scale)))
        if pair is None:
            return it
        memory.push(*pair)
        if before - problem.value <= tol * max(abs(before), abs(problem.value), 1.0):
            return it
    return max_iter


def score(z_val: Tensor, y_val: Tensor, theta: Tensor) -> tuple[float, float]:
    """Val top-1 and mean cross-entropy of the whitened weights ``theta``."""
    logits = (z_val @ theta.to(z_val.dtype)).float()
    loss, _ = softmax_xent(logits, y_val)
    return (logits.argmax(1) == y_val).float().mean().item(), loss.item()


def logistic_path(z: Tensor, y: Tensor, lams: list[float], theta0: Tensor, *,
                  val: tuple[Tensor, Tensor] | None = None, max_iter: int = 100,
                  tol: float = 1e-4, history: int = 10, patience: int = 2) -> list[PathPoint]:
    """Solve the penalised logistic problem for each ``lam`` in order, warm-started.

    ``lams`` should decrease (strong to weak): the strongly regularised problems are the
    easiest and each solution is a good start for the next. With ``val`` the path stops
    after ``patience`` consecutive values that improve neither val top-1 nor val loss.
    """
    problem = SoftmaxProblem(z, y, theta0, lams[0])
    memory = _Memory(history)
    points: list[PathPoint] = []
    best, stale = (-1.0, math.inf), 0
    for lam in lams:
        memory.shift(lam - problem.lam, problem.mask)
        problem.set_lam(lam)
        n_iter = minimize(problem, memory, max_iter=max_iter, tol=tol)
        point = PathPoint(lam, problem.theta.clone(), problem.value, n_iter=n_iter)
        points.append(point)
        if val is None:
            continue
        point.val_top1, point.val_loss = score(*val, point.theta)
        improved = point.val_top1 > best[0] or point.val_loss < best[1]
        best = (max(best[0], point.val_top1), min(best[1], point.val_loss))
        stale = 0 if improved else stale + 1
        if stale >= patience:
            break
    return points
