"""Head numerics: whitened eigenbasis, closed-form ridge path, L-BFGS logistic search, batched MLPs.

The linear math, in one place (n train rows, d features, K classes):

* **Normalise** on train: ``x_s = (x - mean) * scale``. By default ``scale`` is one global
  factor (mean feature variance -> 1), which keeps the relative scale of the features; per-
  feature standardisation is an option (it inflates near-constant features, e.g. the border
  pixels of digits, and cost 0.5-1 point there). ``S = cov(x_s) = V diag(e) V^T`` is
  eigendecomposed once, in float64; ``mean(e) = 1``, so every shrinkage below is scale-free.
* **Ridge path.** One-hot least squares, ``W(a) = V diag(1/(e+a)) B`` with
  ``B = V^T X_s^T Y / n``: each value ``a`` costs one small matmul, so a whole path is scored
  on val for the price of the eigendecomposition. Its best ``a`` seeds the search below.
* **Logistic objective.** Mean multinomial cross-entropy + ``lam/2 tr(W^T (S + eps I) W)``
  (bias unpenalised): ordinary L2 measured in the data's metric. ``eps -> inf`` is plain L2
  (scikit-learn's family, up to scale); small ``eps`` also penalises the logits' variance on
  train. Both ends win somewhere (eps ~ 1: 90.7% vs 82% on the EVA-like synthetic features;
  eps >= 10 on digits), so the search walks ``(eps, lam)``. ``C = 1 / (lam * n)``.
* **Whitened basis.** Solved in ``z = x_s V diag(e + base)^-1/2`` with ``base`` the ridge's
  choice: ``cov(z) = diag(e/(e+base))`` is close to the identity, so L-BFGS needs tens of
  iterations, not hundreds. There the penalty is ``lam/2 sum_j w_j |u_j|^2`` with
  ``w_j = (e_j + eps)/(e_j + base)``: every ``eps`` shares one ``z`` and one set of
  coordinates, and a diagonal Hessian model (``SoftmaxProblem``) absorbs the conditioning
  that large ``eps`` brings back.
* **Path.** ``lam`` decreases, each solution warm-starts the next, and the L-BFGS curvature
  pairs are kept: the penalty Hessian is ``lam diag(w)``, so a pair's ``y`` moves by exactly
  ``dlam * w * s``.
* **Logits are linear in the weights**: the solver keeps the train logits in float32 and
  updates them by ``t * z @ p`` along a direction ``p``, so an iteration costs exactly two
  matmuls (``z @ p`` and ``z^T (P - Y)``, bf16 when allowed) whatever the line search tries,
  and the objective carries no bf16 rounding noise.
* **Back to raw features**: ``logits = x @ W.T + b`` with
  ``W.T = diag(scale) V diag(e+base)^-1/2 U`` and ``b = b_white - mean @ W.T``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

# Relative variance below which a feature counts as constant (scale 0, not 1/0).
_CONSTANT_VARIANCE = 1e-10
# Armijo sufficient-decrease constant and the most halvings one line search may try.
_ARMIJO = 1e-4
_MAX_BACKTRACKS = 20
# Relative decrease under which an iteration is noise (a few float32 ulps of the objective).
_STALL = 1e-7
# Convergence is relative to the objective, floored for nearly separable problems (f -> 0).
_LOSS_FLOOR = 1e-2
# Rows sampled to estimate the per-class softmax curvature of the diagonal Hessian model.
_CURVATURE_ROWS = 4096
# Rows per block where a whole-split temporary ([n, d]) would only be consumed block by block.
_BLOCK_ROWS = 8192
# A search point is first solved this much more loosely, enough to see it is clearly worse.
_PROBE_FACTOR = 10.0


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero inside: Adam's second moments and tiny softmax
    probabilities underflow into them, and x86 CPUs handle them 10-20x slower (measured:
    sqrt of 1.4M denormals 26 ms vs 3.4 ms). Restores torch's default (off) on exit."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def without_denormals(fn: Callable) -> Callable:
    """Decorator form of ``flush_denormals``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with flush_denormals():
            return fn(*args, **kwargs)
    return wrapper


@dataclass(frozen=True)
class Eigenbasis:
    """Normalisation and covariance eigendecomposition of the train features.

    ``eigvals`` are ascending, clamped at 0 and average 1; ``eigvecs`` are orthonormal columns.
    """

    mean: Tensor
    scale: Tensor
    eigvals: Tensor
    eigvecs: Tensor

    def projector(self, shrink: float) -> Tensor:
        """``M`` such that ``(x - mean) @ M`` are whitened coordinates with shrinkage ``shrink``."""
        return (self.scale[:, None] * self.eigvecs) * (self.eigvals + shrink).rsqrt()

    def to_raw(self, shrink: float, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Map whitened weights ``theta = [U; b]`` ([d+1, K]) to raw ``(W [K, d], b [K])``."""
        wt = self.projector(shrink) @ theta[:-1]
        return wt.T.contiguous(), theta[-1] - self.mean @ wt


def fit_eigenbasis(X: Tensor, *, standardize: bool = False) -> Eigenbasis:
    """Normalise and eigendecompose the train covariance (float32 product, float64 eigh).

    The product stays float32 even when the solver uses bf16: it defines the regulariser, and
    bf16 would round every covariance entry to 3 digits.
    """
    mean = X.mean(0)
    cov = torch.zeros(X.shape[1], X.shape[1], dtype=X.dtype, device=X.device)
    for lo in range(0, len(X), _BLOCK_ROWS):  # no centred copy of X: blocks keep temporaries small
        xc = X[lo:lo + _BLOCK_ROWS] - mean
        cov.addmm_(xc.T, xc)
    return eigenbasis(mean, cov / X.shape[0], standardize=standardize)


def eigenbasis(mean: Tensor, cov: Tensor, *, standardize: bool = False) -> Eigenbasis:
    """The basis from the train mean and covariance (from memory, or streamed statistics)."""
    var = cov.diagonal().clone()
    live = var > _CONSTANT_VARIANCE * var.max().clamp_min(1e-30)
    if standardize:
        scale = torch.where(live, var.clamp_min(1e-30).rsqrt(), torch.zeros_like(var))
    else:
        scale = torch.full_like(var, var.mean().clamp_min(1e-30).rsqrt().item())
    norm = cov.double() * scale.double()[:, None] * scale.double()[None, :]
    eigvals, eigvecs = torch.linalg.eigh(norm)
    return Eigenbasis(mean.float(), scale.float(), eigvals.clamp_min(0).float(),
                      eigvecs.float().contiguous())


def class_sums(X: Tensor, y: Tensor, n_classes: int) -> Tensor:
    """Per-class sums of the rows of X ([K, d]), i.e. ``Y^T X``, in one scatter-add."""
    return torch.zeros(n_classes, X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, y, X)


def ridge_path(basis: Eigenbasis, X: Tensor, y: Tensor, X_val: Tensor, y_val: Tensor,
               alphas: list[float], *, n_classes: int, dtype: torch.dtype) -> list[float]:
    """Val top-1 of one-hot ridge regression for every ``alpha``, from one eigendecomposition."""
    counts = torch.bincount(y, minlength=n_classes).to(X.dtype)
    xty = class_sums(X, y, n_classes) - counts[:, None] * basis.mean  # centred Y^T X, [K, d]
    return ridge_scores(basis, xty, counts, X_val, y_val, alphas, dtype=dtype)


def ridge_scores(basis: Eigenbasis, xty: Tensor, counts: Tensor, X_val: Tensor, y_val: Tensor,
                 alphas: list[float], *, dtype: torch.dtype) -> list[float]:
    """The ridge path from sufficient statistics: centred class sums ``xty`` [K, d] and class
    ``counts``. Features are centred, so the intercept is the class prior and the coefficients
    in the eigenbasis are ``B / (e + alpha)``: one [n_val, d] x [d, K] matmul per alpha."""
    n = counts.sum()
    vs = basis.scale[:, None] * basis.eigvecs
    b = (vs.T @ xty.float().T) / n.float()
    prior = (counts / n).float()
    ev = ((X_val - basis.mean) @ vs).to(dtype)
    accs = []
    for alpha in alphas:
        scores = (ev @ (b / (basis.eigvals + alpha)[:, None]).to(dtype)).float() + prior
        accs.append((scores.argmax(1) == y_val).float().mean().item())
    return accs


def whiten(basis: Eigenbasis, X: Tensor, shrink: float, *, dtype: torch.dtype) -> Tensor:
    """Whitened features plus a trailing column of ones for the bias ([n, d+1], ``dtype``)."""
    proj = basis.projector(shrink).to(dtype)
    z = torch.empty(len(X), proj.shape[1] + 1, dtype=dtype, device=X.device)
    z[:, -1] = 1
    for lo in range(0, len(X), _BLOCK_ROWS):  # written in place, block by block: no [n, d] temporaries
        z[lo:lo + _BLOCK_ROWS, :-1] = (X[lo:lo + _BLOCK_ROWS] - basis.mean).to(dtype) @ proj
    return z


def softmax_xent(logits: Tensor, y: Tensor, *, out: Tensor | None = None) -> tuple[float, Tensor]:
    """Mean cross-entropy and softmax probabilities (float32) of ``logits`` (into ``out`` if given)."""
    logp = torch.log_softmax(logits, 1) if out is None else torch.log_softmax(logits, 1, out=out)
    return -logp.gather(1, y[:, None]).mean().item(), logp.exp_()


class Scratch:
    """[n, K] work buffers shared by the problems of one design (they run one at a time). A fresh
    [n, K] tensor costs more in page faults than the kernel that fills it (200k x 100 float32:
    log_softmax 36 ms into a new tensor, 7 ms into a reused one; add 64 vs 6 ms)."""

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, like: Tensor, dtype: torch.dtype, width: int) -> Tensor:
        """Buffer ``name``: [len(like), width] of ``dtype`` on ``like``'s device."""
        shape = (like.shape[0], width)
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype or buf.device != like.device:
            buf = self.buffers[name] = torch.empty(shape, dtype=dtype, device=like.device)
        return buf


def _dot(a: Tensor, b: Tensor) -> float:
    return torch.dot(a.reshape(-1), b.reshape(-1)).item()


@dataclass
class _Memory:
    """L-BFGS curvature pairs ``(s, y)``; they survive changes of ``lam`` (module docstring)."""

    history: int
    s: list[Tensor] = field(default_factory=list)
    y: list[Tensor] = field(default_factory=list)

    def push(self, s: Tensor, y: Tensor) -> None:
        if _dot(s, y) > 1e-10 * _dot(y, y):  # keeps the inverse-Hessian estimate positive
            self.s.append(s)
            self.y.append(y)
            if len(self.s) > self.history:
                del self.s[0], self.y[0]

    def shift(self, dlam: float, weights: Tensor) -> None:
        """Follow ``lam += dlam``: the penalty Hessian is ``lam * weights``, so each ``y``
        moves by ``dlam * weights * s`` exactly; pairs that turn non-convex are dropped."""
        pairs = list(zip(self.s, self.y))
        self.clear()
        for s, y in pairs:
            self.push(s, y.add_(weights * s, alpha=dlam))

    def clear(self) -> None:
        self.s, self.y = [], []

    def direction(self, g: Tensor, h0: Tensor) -> Tensor:
        """Two-loop recursion: ``-H g``, H the L-BFGS inverse Hessian grown from ``diag(h0)``."""
        q, coefs = g.clone(), []
        for s, y in zip(reversed(self.s), reversed(self.y)):
            rho = 1.0 / _dot(s, y)
            a = rho * _dot(s, q)
            q.add_(y, alpha=-a)
            coefs.append((rho, a))
        # The diagonal model gives the shape; the newest pair rescales it (Nocedal & Wright's
        # gamma for a diagonal start), which absorbs what the model gets wrong in size.
        gamma = _dot(self.s[-1], self.y[-1]) / _dot(self.y[-1] * h0, self.y[-1]) if self.s else 1.0
        q.mul_(h0).mul_(gamma)
        for (s, y), (rho, a) in zip(zip(self.s, self.y), reversed(coefs)):
            q.add_(s, alpha=a - rho * _dot(y, q))
        return q.neg_()


class PenalisedProblem:
    """What a softmax problem knows without its data: the penalty, the diagonal Hessian model
    (``SoftmaxProblem``'s docstring) and moves along the ``lam`` path. Subclasses set ``theta``,
    ``lam``, ``weights``, ``variance``, ``value``, ``grad`` and ``curvature``, and implement
    ``step``: in memory (``SoftmaxProblem``) or streamed (``probes.streaming``)."""

    theta: Tensor
    lam: float
    weights: Tensor
    variance: Tensor
    value: float
    grad: Tensor
    curvature: Tensor

    def _penalty(self, a: Tensor, b: Tensor) -> float:
        return 0.5 * self.lam * _dot(self.weights * a, b)

    def inverse_hessian(self) -> Tensor:
        """Diagonal inverse of the Hessian model (class docstring), [d+1, K]."""
        h = self.variance * self.curvature + self.lam * self.weights
        return h.clamp_min(1e-8).reciprocal_()

    def suboptimality(self) -> float:
        """Estimated ``f - f*`` under the diagonal model: ``g^T H^-1 g / 2``."""
        return 0.5 * _dot(self.grad * self.inverse_hessian(), self.grad)

    def set_lam(self, lam: float) -> None:
        """Move along the path: value and gradient change in closed form, no matmul."""
        dlam, self.lam = lam - self.lam, lam
        self.value += 0.5 * dlam * _dot(self.weights * self.theta, self.theta)
        self.grad.add_(self.weights * self.theta, alpha=dlam)


class SoftmaxProblem(PenalisedProblem):
    """Penalised multinomial cross-entropy on fixed whitened features, logits cached.

    ``z`` is [n, d+1] (last column ones) in the matmul dtype; ``theta`` [d+1, K] float32.
    The penalty is ``lam/2 sum_j weights_j |theta_j|^2``; ``variance`` is the variance of
    each column of ``z``. Both ([d+1, 1]) feed a diagonal Hessian model,
    ``variance_j * c_k + lam * weights_j`` with ``c_k = mean_i p_ik (1 - p_ik)`` the softmax
    curvature of class k: it is L-BFGS's starting inverse Hessian and the yardstick of
    convergence, whatever the penalty's conditioning.
    """

    def __init__(self, z: Tensor, y: Tensor, theta: Tensor, lam: float, *, weights: Tensor,
                 variance: Tensor, scratch: Scratch | None = None) -> None:
        self.z, self.y, self.lam = z, y, lam
        self.weights, self.variance = weights, variance
        self.scratch = scratch or Scratch()
        self.rows = torch.arange(len(y), device=y.device)
        self.theta = theta.clone()
        self.logits = self._forward(self.theta, torch.empty(len(z), theta.shape[1], device=z.device))
        self.matmuls = 1
        loss, probs = softmax_xent(self.logits, y, out=self._buffer("work"))
        self.value = loss + self._penalty(self.theta, self.theta)
        self.grad = self._gradient(probs)

    def _buffer(self, name: str, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.scratch.get(name, self.z, dtype, self.theta.shape[1])

    def _forward(self, theta: Tensor, out: Tensor) -> Tensor:
        """``z @ theta`` in float32, into ``out``."""
        if self.z.dtype == torch.float32:
            return torch.matmul(self.z, theta, out=out)
        low = self._buffer("low", self.z.dtype)
        return out.copy_(torch.matmul(self.z, theta.to(self.z.dtype), out=low))

    def _gradient(self, probs: Tensor) -> Tensor:
        """``z^T (P - Y) / n + lam * weights * theta``. ``P - Y`` is rounded to bf16 as a
        whole (not P, then minus ``z^T Y``), so the gradient keeps its relative precision."""
        # c_k = mean_i p_ik (1 - p_ik); a strided sample of rows is plenty for a preconditioner.
        sample = probs[::max(1, len(probs) // _CURVATURE_ROWS)]
        self.curvature = (sample - sample * sample).mean(0, keepdim=True)
        probs[self.rows, self.y] -= 1.0
        self.matmuls += 1
        if self.z.dtype != torch.float32:
            probs = self._buffer("low", self.z.dtype).copy_(probs)
        g = (self.z.T @ probs).float().div_(len(self.y))
        return g.add_(self.weights * self.theta, alpha=self.lam)

    def step(self, p: Tensor) -> tuple[Tensor, Tensor] | None:
        """Backtracking Armijo search along ``p``; returns the pair ``(s, dgrad)`` or None."""
        p = p.to(self.z.dtype).float()  # the step the bf16 logits really take
        slope = _dot(self.grad, p)
        if not slope < 0:
            return None
        lp = self._forward(p, self._buffer("direction"))
        self.matmuls += 1
        # The penalty is quadratic along the line, so it is known in closed form for every t.
        pen = (self._penalty(self.theta, self.theta), 2 * self._penalty(self.theta, p),
               self._penalty(p, p))
        t = 1.0
        for _ in range(_MAX_BACKTRACKS):
            logits = torch.add(self.logits, lp, alpha=t, out=self._buffer("trial"))
            loss, probs = softmax_xent(logits, self.y, out=self._buffer("work"))
            value = loss + pen[0] + t * pen[1] + t * t * pen[2]
            if value <= self.value + _ARMIJO * t * slope:
                break
            t *= 0.5
        else:
            return None
        self.theta.add_(p, alpha=t)
        self.logits.copy_(logits)
        self.value, old_grad = value, self.grad
        self.grad = self._gradient(probs)
        return p.mul_(t), self.grad - old_grad


@without_denormals
def minimize(problem: PenalisedProblem, memory: _Memory, *, max_iter: int, tol: float) -> int:
    """L-BFGS until the estimated suboptimality is at most ``tol * max(|f|, 0.01)``.

    The estimate uses the diagonal Hessian model, so it stays meaningful on the badly
    conditioned large-shrink problems where a small gradient or a small decrease are not
    signs of convergence. Also stops when no descent is left at this precision.
    """
    for it in range(1, max_iter + 1):
        if problem.suboptimality() <= tol * max(abs(problem.value), _LOSS_FLOOR):
            return it - 1
        before, informed = problem.value, bool(memory.s)
        pair = problem.step(memory.direction(problem.grad, problem.inverse_hessian()))
        if pair is None and informed:  # stale curvature: one restart from the diagonal model
            memory.clear()
            pair = problem.step(memory.direction(problem.grad, problem.inverse_hessian()))
        if pair is None:
            return it
        memory.push(*pair)
        if informed and before - problem.value <= _STALL * max(abs(before), 1.0):
            return it
    return max_iter


def calibrated_xent(logits: Tensor, y: Tensor, *, steps: int = 20) -> Tensor:
    """Per-sample cross-entropy at the best temperature (Newton on ``beta = 1/T``, convex).

    Raw val loss keeps falling as ``lam`` shrinks (strongly penalised logits are merely
    underconfident), so it cannot say where the optimum is; with the scale factored out it
    measures how well the classes are ranked, and it is smooth where top-1 on a small val
    set jumps by single samples.
    """
    beta = 1.0
    target = logits.gather(1, y[:, None])[:, 0]
    for _ in range(steps):
        probs = torch.softmax(beta * logits, 1)
        mean = (probs * logits).sum(1)
        grad = (mean - target).mean().item()
        hess = ((probs * logits * logits).sum(1) - mean * mean).mean().item()
        if hess <= 1e-12 or abs(grad) <= 1e-6 * hess:
            break
        beta = min(max(beta - grad / hess, 0.5 * beta), 2.0 * beta)  # damped: stays positive
    return -torch.log_softmax(beta * logits, 1).gather(1, y[:, None])[:, 0]


@dataclass
class Fit:
    """One solved point ``(shrink, lam)`` and how it scores on val.

    ``theta`` is in the search's shared whitened basis; ``val_losses`` are per-sample
    calibrated cross-entropies (``calibrated_xent``), kept for paired comparisons.
    """

    shrink: float
    lam: float
    theta: Tensor
    n_iter: int
    train_loss: float
    val_top1: float = math.nan
    val_loss: float = math.nan
    val_losses: Tensor | None = None
    tol: float = math.nan  # the tolerance it was solved to

    def fits_better(self, other: Fit | None) -> bool:
        """The search's compass: lower calibrated val loss (smooth, unlike top-1)."""
        return other is None or self.val_loss < other.val_loss

    def clearly_worse(self, other: Fit) -> bool:
        """Paired test on val: mean loss difference above two standard errors."""
        diff = self.val_losses - other.val_losses
        return diff.mean().item() > 2.0 * diff.std().item() / math.sqrt(len(diff))


@dataclass(frozen=True)
class SolverOptions:
    """How hard each point is solved and in which precision its matmuls run."""

    dtype: torch.dtype = torch.float32
    max_iter: int = 200
    tol: float = 3e-4
    history: int = 10


@dataclass(frozen=True)
class Whitened:
    """Train (and val) features whitened once, at shrinkage ``base``; every rung reuses them
    (map solutions back with ``basis.to_raw(base, theta)``)."""

    basis: Eigenbasis
    base: float
    z: Tensor
    y: Tensor
    z_val: Tensor | None = None
    y_val: Tensor | None = None
    scratch: Scratch = field(default_factory=Scratch, compare=False, repr=False)

    def problem(self, theta: Tensor, lam: float, *, weights: Tensor,
                variance: Tensor) -> SoftmaxProblem:
        """The penalised objective on these features (``probes.streaming`` streams it instead)."""
        return SoftmaxProblem(self.z, self.y, theta, lam, weights=weights, variance=variance,
                              scratch=self.scratch)

    def initial_theta(self, n_classes: int) -> Tensor:
        return initial_theta(self.y, self.z.shape[1] - 1, n_classes)


def whiten_split(basis: Eigenbasis, X: Tensor, y: Tensor, val: tuple[Tensor, Tensor] | None, *,
                 base: float, dtype: torch.dtype) -> Whitened:
    if val is None:
        return Whitened(basis, base, whiten(basis, X, base, dtype=dtype), y)
    return Whitened(basis, base, whiten(basis, X, base, dtype=dtype), y,
                    whiten(basis, val[0], base, dtype=dtype), val[1])


class Design(Protocol):
    """What a search needs of its train data: ``Whitened`` (in memory) or
    ``probes.streaming.StreamedDesign`` (read block by block from the store)."""

    basis: Eigenbasis
    base: float
    z_val: Tensor | None
    y_val: Tensor | None

    def problem(self, theta: Tensor, lam: float, *, weights: Tensor, variance: Tensor) -> PenalisedProblem: ...

    def initial_theta(self, n_classes: int) -> Tensor: ...


class Rung:
    """All ``lam`` values at one shrinkage: a warm problem and its L-BFGS memory.

    Every rung works in the same coordinates, the whitened basis at ``data.base``; its own
    shrinkage only reweights the penalty, ``weights = (e + shrink) / (e + base)``. So the
    whitened features are computed once and a solution moves between rungs unchanged.
    """

    def __init__(self, data: Design, *, shrink: float, theta: Tensor, lam: float,
                 options: SolverOptions) -> None:
        self.data, self.shrink, self.options = data, shrink, options
        e = data.basis.eigvals
        self.weights = torch.cat([(e + shrink) / (e + data.base), e.new_zeros(1)])[:, None]
        self.variance = torch.cat([e / (e + data.base), e.new_ones(1)])[:, None]
        self.problem = self._problem(theta, lam)
        self.memory = _Memory(options.history)

    def _problem(self, theta: Tensor, lam: float) -> SoftmaxProblem:
        return self.data.problem(theta, lam, weights=self.weights, variance=self.variance)

    def restart(self, theta: Tensor, lam: float) -> None:
        """Start again from ``theta``, keeping the curvature pairs (they stay valid)."""
        self.memory.shift(lam - self.problem.lam, self.weights)
        self.problem = self._problem(theta, lam)

    def solve(self, lam: float, *, tol: float | None = None, rival: Fit | None = None) -> Fit:
        """Solve at ``lam``, warm from this rung's previous solution; score it on val if any.

        With a ``rival``, the point is first solved ``_PROBE_FACTOR`` times more loosely: if it
        is already clearly worse than the rival it stays that way (the search only needed to
        know that), otherwise the same iterations go on to ``tol``.
        """
        tol = self.options.tol if tol is None else tol
        self.memory.shift(lam - self.problem.lam, self.weights)
        self.problem.set_lam(lam)
        n_iter = 0
        if rival is not None and self.data.z_val is not None:
            n_iter = self._minimize(_PROBE_FACTOR * tol)
            fit = self._fit(lam, n_iter, _PROBE_FACTOR * tol)
            if fit.clearly_worse(rival):
                return fit
        n_iter += self._minimize(tol)
        return self._fit(lam, n_iter, tol)

    def _minimize(self, tol: float) -> int:
        return minimize(self.problem, self.memory, max_iter=self.options.max_iter, tol=tol)

    def _fit(self, lam: float, n_iter: int, tol: float) -> Fit:
        fit = Fit(self.shrink, lam, self.problem.theta.clone(), n_iter, self.problem.value,
                  tol=tol)
        return fit if self.data.z_val is None else self._score(fit)

    def _score(self, fit: Fit) -> Fit:
        z_val, y_val = self.data.z_val, self.data.y_val
        logits = (z_val @ fit.theta.to(z_val.dtype)).float()
        fit.val_top1 = (logits.argmax(1) == y_val).float().mean().item()
        fit.val_losses = calibrated_xent(logits, y_val)
        fit.val_loss = fit.val_losses.mean().item()
        return fit


def initial_theta(y: Tensor, d: int, n_classes: int) -> Tensor:
    """Zero weights and log-prior biases: the solution at infinite ``lam``."""
    theta = torch.zeros(d + 1, n_classes, device=y.device)
    prior = torch.bincount(y, minlength=n_classes).float() / len(y)
    theta[-1] = prior.clamp_min(1e-12).log()
    return theta


def walk(rung: Rung, lams: list[float], start: int, first: Fit, *, tol: float) -> list[Fit]:
    """Bracket the calibrated-val-loss minimum over the ``lam`` grid from index ``start``.

    Goes to weaker values while the loss improves; if the first weaker value is already
    worse, goes to stronger ones instead. Assumes a unimodal curve, which the calibrated loss
    is in practice (raw top-1 is not).
    """
    fits, best = [first], first
    for direction in (1, -1):
        i = start + direction
        while 0 <= i < len(lams):
            fit = rung.solve(lams[i], tol=tol, rival=best)
            fits.append(fit)
            if not fit.fits_better(best):
                break
            best, i = fit, i + direction
        if best is not first:
            break
    return fits


def nearest(grid: list[float], target: float) -> int:
    """Index of the grid value closest to ``target`` on a log scale."""
    return min(range(len(grid)), key=lambda i: abs(math.log(grid[i] / target)))


def search_logistic(data: Design, *, n_classes: int, lams: list[float], shrinks: list[float],
                    start: float, options: SolverOptions,
                    search_tol: float) -> tuple[Fit, list[Fit]]:
    """Choose ``(shrink, lam)`` on val; returns the chosen fit, solved to ``options.tol``,
    and every point visited.

    ``shrinks`` is a ladder (increasing); each rung brackets its best ``lam`` with ``walk``,
    warm-started from the best point so far (between rungs the best ``lam`` moves roughly
    like ``shrink^-1/2``, as seen on digits and the EVA-like features). The ladder stops at a
    rung clearly worse than the best (paired test on val), or after two rungs without
    improvement. Points are solved to ``search_tol``; the final choice, highest val top-1
    (ties: lower calibrated loss), is then polished.
    """
    fits: list[Fit] = []
    rungs: dict[float, Rung] = {}
    best, stale, index = None, 0, nearest(lams, start)
    theta = data.initial_theta(n_classes)
    for shrink in shrinks:
        if best is not None:
            theta = best.theta
            index = nearest(lams, best.lam * math.sqrt(best.shrink / shrink))
        rung = rungs[shrink] = Rung(data, shrink=shrink, theta=theta, lam=lams[index],
                                    options=options)
        first = rung.solve(lams[index], tol=search_tol, rival=best)
        pruned = best is not None and first.clearly_worse(best)
        visited = [first] if pruned else walk(rung, lams, index, first, tol=search_tol)
        fits += visited
        rung_best = min(visited, key=lambda f: f.val_loss)
        if rung_best.fits_better(best):
            best, stale = rung_best, 0
            continue
        stale += 1
        if pruned or stale >= 2 or rung_best.clearly_worse(best):
            break
    chosen = max(fits, key=lambda f: (f.val_top1, -f.val_loss))
    return polish(rungs[chosen.shrink], chosen), fits


def polish(rung: Rung, fit: Fit) -> Fit:
    """Re-solve ``fit`` to the rung's own tolerance, warm from its search solution."""
    if fit.tol <= rung.options.tol:
        return fit
    rung.restart(fit.theta, fit.lam)
    polished = rung.solve(fit.lam)
    polished.n_iter += fit.n_iter
    return polished


# ---------------------------------------------------------------------------------------
# Batched MLP heads: G heads trained at once, AdamW + OneCycle with per-head lr / decay.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPSpec:
    """What may differ between the heads of one batched training."""

    lr: float
    weight_decay: float
    hidden: tuple[int, ...]
    dropout: float


@dataclass(frozen=True)
class TrainOptions:
    """What the heads of one batched training share (data order, schedule, precision)."""

    epochs: int = 30
    batch_size: int = 256
    label_smoothing: float = 0.1
    early_stopping: bool = True
    patience: int = 5
    dtype: torch.dtype = torch.float32
    seed: int = 0


@dataclass
class StackedMLP:
    """G MLPs as stacked tensors: ``weights[i]`` is [G, fan_in, fan_out], ``biases[i]``
    [G, fan_out], ``masks[i]`` [G, fan_out] switches off the padding of narrower heads."""

    weights: list[Tensor]
    biases: list[Tensor]
    masks: list[Tensor]
    dropout: Tensor  # [G, 1, 1]

    def params(self) -> list[Tensor]:
        return [*self.weights, *self.biases]

    def forward(self, x: Tensor, *, noise: list[Tensor] | None = None) -> Tensor:
        """Logits [G, B, K] of [B, d] inputs; ``noise`` ([B, width] uniforms per hidden layer,
        shared by all heads: common random numbers make heads comparable) turns dropout on."""
        g, (d, width) = self.weights[0].shape[0], self.weights[0].shape[1:]
        h = (x @ self.weights[0].transpose(0, 1).reshape(d, g * width)).view(len(x), g, width)
        h = h.transpose(0, 1) + self.biases[0][:, None, :]  # one wide matmul for all heads
        for i in range(1, len(self.weights)):
            h = torch.nn.functional.gelu(h) * self.masks[i - 1][:, None, :]
            if noise is not None:
                keep = 1.0 - self.dropout
                h = h * (noise[i - 1][None, :, :h.shape[-1]] < keep) / keep
            h = torch.baddbmm(self.biases[i][:, None, :], h, self.weights[i])
        return h

    def head(self, g: int) -> list[tuple[Tensor, Tensor]]:
        """Head ``g`` as ``(weight [fan_out, fan_in], bias)`` per layer, padding removed."""
        widths = [int(m[g].sum().item()) for m in self.masks]
        fan_in = [self.weights[0].shape[1], *widths]
        return [(w[g, :fan_in[i], :widths[i]].T.contiguous(), b[g, :widths[i]].clone())
                for i, (w, b) in enumerate(zip(self.weights, self.biases))]


def init_stacked(specs: list[MLPSpec], d: int, n_classes: int, *, seed: int,
                 device: torch.device) -> StackedMLP:
    """nn.Linear's init distribution (uniform, bound 1/sqrt(fan_in)), drawn once at the widest
    widths and shared by all heads (rescaled to each head's own fan-in, padding zeroed): heads
    differ only by their hyper-parameters, and ``MLPHead`` is the one-head case."""
    depths = {len(s.hidden) for s in specs}
    if len(depths) != 1:
        raise ValueError(f"heads trained together need the same number of hidden layers, "
                         f"got {sorted(depths)}")
    gen = torch.Generator().manual_seed(seed)
    layers = [[s.hidden[i] for s in specs] for i in range(depths.pop())]
    layers.append([n_classes] * len(specs))
    weights, biases, masks = [], [], []
    in_mask, true_in = torch.ones(len(specs), d), torch.full((len(specs),), float(d))
    for widths in layers:
        fan_in, fan_out = in_mask.shape[1], max(widths)
        w = torch.rand(fan_in, fan_out, generator=gen) * 2 - 1
        b = torch.rand(fan_out, generator=gen) * 2 - 1
        out_mask = (torch.arange(fan_out)[None] < torch.tensor(widths)[:, None]).float()
        bound = true_in.rsqrt()
        weights.append(w[None] * bound[:, None, None] * in_mask[:, :, None] * out_mask[:, None, :])
        biases.append(b[None] * bound[:, None] * out_mask)
        masks.append(out_mask)
        in_mask, true_in = out_mask, torch.tensor(widths, dtype=torch.float32)
    to = lambda ts: [t.to(device) for t in ts]  # noqa: E731
    dropout = torch.tensor([s.dropout for s in specs], device=device)[:, None, None]
    return StackedMLP(to(weights), to(biases), to(masks), dropout)


def onecycle(step: int, total: int, *, pct_start: float = 0.3, div: float = 25.0,
             final_div: float = 1e4) -> tuple[float, float]:
    """``(lr / max_lr, beta1)`` at ``step`` of torch's ``OneCycleLR`` with its defaults
    (cosine warm-up over 30%, cosine decay to max_lr/25/1e4, beta1 cycled 0.95 -> 0.85 -> 0.95)."""
    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    peak = float(pct_start * total) - 1
    if step <= peak:
        pct = step / peak
        return anneal(1 / div, 1.0, pct), anneal(0.95, 0.85, pct)
    pct = (step - peak) / (total - 1 - peak)
    return anneal(1.0, 1 / div / final_div, pct), anneal(0.85, 0.95, pct)


class StackedAdamW:
    """AdamW (torch's update, decoupled decay) over stacked parameters, each head with its
    own learning rate and weight decay: one optimizer for the whole grid."""

    def __init__(self, params: list[Tensor], lr: Tensor, weight_decay: Tensor, *,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.params, self.beta2, self.eps, self.t = params, beta2, eps, 0
        shape = lambda p: (len(lr),) + (1,) * (p.dim() - 1)  # noqa: E731
        self.lr = [lr.view(shape(p)) for p in params]
        self.wd = [weight_decay.view(shape(p)) for p in params]
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.buf = [torch.empty_like(p) for p in params]  # stacked heads are large: no temporaries

    @torch.no_grad()
    def step(self, grads: list[Tensor], *, lr_factor: float, beta1: float) -> None:
        self.t += 1
        bc1, bc2 = 1 - beta1 ** self.t, math.sqrt(1 - self.beta2 ** self.t)
        for p, g, m, v, lr, wd, buf in zip(self.params, grads, self.m, self.v, self.lr,
                                           self.wd, self.buf):
            p.mul_(1 - lr * lr_factor * wd)
            m.lerp_(g, 1 - beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            # p -= lr_g * f / bc1 * m / (sqrt(v) / bc2 + eps), the per-head lr folded into buf
            torch.sqrt(v, out=buf).div_(bc2).add_(self.eps).div_(lr * (lr_factor / bc1))
            p.addcdiv_(m, buf, value=-1.0)


@dataclass
class TrainReport:
    """Per-head outcome of a batched training; ``history`` holds (val top-1, val loss) per
    epoch as [G] tensors."""

    best_epoch: Tensor
    val_top1: Tensor
    val_loss: Tensor
    epochs_run: int
    history: list[tuple[Tensor, Tensor]]


@torch.no_grad()
def evaluate_stacked(model: StackedMLP, X: Tensor, y: Tensor, *, dtype: torch.dtype,
                     batch: int = 4096) -> tuple[Tensor, Tensor]:
    """Val top-1 and mean cross-entropy (no smoothing) of every head, [G] each."""
    correct, loss = 0.0, 0.0
    for i in range(0, len(X), batch):
        logits = forward_autocast(model, X[i:i + batch], dtype=dtype).float()
        yb = y[i:i + batch]
        correct = correct + (logits.argmax(-1) == yb).float().sum(1)
        loss = loss - torch.log_softmax(logits, -1).gather(
            -1, yb.expand(logits.shape[0], -1)[..., None])[..., 0].sum(1)
    return correct / len(X), loss / len(X)


def forward_autocast(model: StackedMLP, x: Tensor, *, dtype: torch.dtype,
                     noise: list[Tensor] | None = None) -> Tensor:
    """Forward pass with bf16 matmuls (fp32 accumulation) when ``dtype`` asks for them."""
    if dtype == torch.float32:
        return model.forward(x, noise=noise)
    with torch.autocast(x.device.type, dtype=dtype):
        return model.forward(x, noise=noise)


class _BestKeeper:
    """Early stopping for G heads at once: each head keeps the weights of its best val epoch
    (higher top-1, ties to lower loss) and counts the epochs since."""

    def __init__(self, params: list[Tensor], n_heads: int) -> None:
        self.best = [p.detach().clone() for p in params]
        device = params[0].device
        self.top1 = torch.full((n_heads,), -1.0, device=device)
        self.loss = torch.full((n_heads,), math.inf, device=device)
        self.epoch = torch.zeros(n_heads, dtype=torch.long, device=device)
        self.stale = torch.zeros(n_heads, dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, epoch: int, top1: Tensor, loss: Tensor, params: list[Tensor]) -> None:
        better = (top1 > self.top1) | ((top1 == self.top1) & (loss < self.loss))
        self.top1 = torch.where(better, top1, self.top1)
        self.loss = torch.where(better, loss, self.loss)
        self.epoch = torch.where(better, torch.full_like(self.epoch, epoch), self.epoch)
        self.stale = torch.where(better, torch.zeros_like(self.stale), self.stale + 1)
        for kept, p in zip(self.best, params):
            kept[better] = p.detach()[better]

    @torch.no_grad()
    def restore(self, params: list[Tensor]) -> None:
        for kept, p in zip(self.best, params):
            p.copy_(kept)


class Batches(Protocol):
    """Where training minibatches come from: ``TensorBatches`` (in memory) or
    ``probes.streaming_mlp.ShuffledBlocks`` (read from the store in shuffled windows)."""

    n: int  # rows per epoch

    def epoch(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]: ...


class TensorBatches:
    """Shuffled minibatches of standardised features already on the device."""

    def __init__(self, X: Tensor, y: Tensor) -> None:
        self.X, self.y, self.n = X, y, len(X)

    def epoch(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(self.n, generator=gen, device=self.X.device)
        for start in range(0, self.n, batch_size):
            idx = order[start:start + batch_size]
            yield self.X[idx], self.y[idx]


def _epoch(model: StackedMLP, opt: StackedAdamW, train: Batches, *, step: int,
           total: int, options: TrainOptions, gen: torch.Generator) -> int:
    """One pass over shuffled minibatches; returns the global step reached."""
    params = model.params()
    widths = [m.shape[1] for m in model.masks[:-1]]
    dropout = bool((model.dropout > 0).any())
    for xb, yb in train.epoch(options.batch_size, gen):
        noise = [torch.rand(len(xb), w, generator=gen, device=xb.device) for w in widths] \
            if dropout else None
        logits = forward_autocast(model, xb, dtype=options.dtype, noise=noise).float()
        k = logits.shape[-1]
        # Sum over heads of each head's mean loss: heads get independent gradients.
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, k), yb.repeat(logits.shape[0]),
            label_smoothing=options.label_smoothing, reduction="sum") / len(xb)
        grads = torch.autograd.grad(loss, params)
        lr_factor, beta1 = onecycle(min(step, total - 1), total)
        opt.step(list(grads), lr_factor=lr_factor, beta1=beta1)
        step += 1
    return step


@without_denormals
def train_stacked(model: StackedMLP, specs: list[MLPSpec], train: Batches,
                  val: tuple[Tensor, Tensor] | None, options: TrainOptions) -> TrainReport:
    """Train every head of ``model`` together; with ``val`` and early stopping each head ends
    with its best epoch's weights, and training stops once every head has gone ``patience``
    epochs without improving."""
    params = [p.requires_grad_(True) for p in model.params()]
    device = params[0].device
    opt = StackedAdamW(params, torch.tensor([s.lr for s in specs], device=device),
                       torch.tensor([s.weight_decay for s in specs], device=device))
    total = options.epochs * math.ceil(train.n / options.batch_size)
    gen = torch.Generator(device=device).manual_seed(options.seed)
    keeper, history, step, epoch = _BestKeeper(params, len(specs)), [], 0, 0
    for epoch in range(1, options.epochs + 1):
        step = _epoch(model, opt, train, step=step, total=total, options=options, gen=gen)
        if val is None:
            continue
        top1, loss = evaluate_stacked(model, *val, dtype=options.dtype)
        history.append((top1.cpu(), loss.cpu()))
        keeper.update(epoch, top1, loss, params)
        if options.early_stopping and bool((keeper.stale >= options.patience).all()):
            break
    if val is not None and options.early_stopping:
        keeper.restore(params)
    for p in params:
        p.requires_grad_(False)
    if val is None:
        nan = torch.full((len(specs),), math.nan)
        return TrainReport(torch.full((len(specs),), epoch), nan, nan, epoch, history)
    last_top1, last_loss = history[-1]
    if options.early_stopping:
        return TrainReport(keeper.epoch.cpu(), keeper.top1.cpu(), keeper.loss.cpu(), epoch, history)
    return TrainReport(torch.full((len(specs),), epoch), last_top1, last_loss, epoch, history)


def grid_logistic(data: Design, *, n_classes: int, lams: list[float], shrinks: list[float],
                  options: SolverOptions, search_tol: float) -> tuple[Fit, list[Fit]]:
    """Every ``(shrink, lam)`` of a grid, for sweep tables: each rung walks the whole
    (decreasing) ``lam`` path warm, and starts from the previous rung's first solution.
    Returns the best by val top-1 (ties: lower calibrated loss), polished, and all points."""
    fits: list[Fit] = []
    rungs: dict[float, Rung] = {}
    theta, prev = data.initial_theta(n_classes), None
    for shrink in shrinks:
        if prev is not None:
            theta = prev.theta
        rung = rungs[shrink] = Rung(data, shrink=shrink, theta=theta, lam=lams[0], options=options)
        path = [rung.solve(lam, tol=search_tol) for lam in lams]
        fits += path
        prev = path[0]
    chosen = max(fits, key=lambda f: (f.val_top1, -f.val_loss))
    return polish(rungs[chosen.shrink], chosen), fits
