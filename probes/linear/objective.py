"""The penalised softmax cross-entropy in whitened coordinates: value, gradient, Armijo step."""

from __future__ import annotations

import torch
from torch import Tensor

# Armijo sufficient-decrease constant and the most halvings one line search may try.
_ARMIJO = 1e-4
_MAX_BACKTRACKS = 20
# Rows sampled to estimate the per-class softmax curvature of the diagonal Hessian model.
_CURVATURE_ROWS = 4096


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

    def transposed(self, z: Tensor) -> Tensor:
        """``z.T`` for the gradient's ``z^T (P - Y)``: a contiguous copy, made once per design, when ``z`` is
        low precision. A bf16 matmul with a transposed operand runs at half speed on the CPU (20,000 x 1409
        by 500, one thread: 96 ms against 54 ms contiguous; the forward ``z @ theta`` is 43 ms), fp32 does not
        care (it keeps the view). Costs one more bf16 copy of the train design (2 bytes a value)."""
        if z.dtype == torch.float32:
            return z.T
        t = self.buffers.get("transposed")
        if t is None or t.shape != (z.shape[1], z.shape[0]) or t.dtype != z.dtype or t.device != z.device:
            t = self.buffers["transposed"] = z.T.contiguous()
        return t


def dot(a: Tensor, b: Tensor) -> float:
    return torch.dot(a.reshape(-1), b.reshape(-1)).item()


class PenalisedProblem:
    """What a softmax problem knows without its data: the penalty, the diagonal Hessian model
    (``SoftmaxProblem``'s docstring) and moves along the ``lam`` path. Subclasses set ``theta``,
    ``lam``, ``weights``, ``variance``, ``value``, ``grad`` and ``curvature``, and implement
    ``step``: in memory (``SoftmaxProblem``) or streamed (``linear.streamed``)."""

    theta: Tensor
    lam: float
    weights: Tensor
    variance: Tensor
    value: float
    grad: Tensor
    curvature: Tensor

    def _penalty(self, a: Tensor, b: Tensor) -> float:
        return 0.5 * self.lam * dot(self.weights * a, b)

    def inverse_hessian(self) -> Tensor:
        """Diagonal inverse of the Hessian model (class docstring), [d+1, K]."""
        h = self.variance * self.curvature + self.lam * self.weights
        return h.clamp_min(1e-8).reciprocal_()

    def suboptimality(self) -> float:
        """Estimated ``f - f*`` under the diagonal model: ``g^T H^-1 g / 2``."""
        return 0.5 * dot(self.grad * self.inverse_hessian(), self.grad)

    def set_lam(self, lam: float) -> None:
        """Move along the path: value and gradient change in closed form, no matmul."""
        dlam, self.lam = lam - self.lam, lam
        self.value += 0.5 * dlam * dot(self.weights * self.theta, self.theta)
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
        g = (self.scratch.transposed(self.z) @ probs).float().div_(len(self.y))
        return g.add_(self.weights * self.theta, alpha=self.lam)

    def step(self, p: Tensor) -> tuple[Tensor, Tensor] | None:
        """Backtracking Armijo search along ``p``; returns the pair ``(s, dgrad)`` or None."""
        p = p.to(self.z.dtype).float()  # the step the bf16 logits really take
        slope = dot(self.grad, p)
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


def initial_theta(y: Tensor, d: int, n_classes: int) -> Tensor:
    """Zero weights and log-prior biases: the solution at infinite ``lam``."""
    theta = torch.zeros(d + 1, n_classes, device=y.device)
    prior = torch.bincount(y, minlength=n_classes).float() / len(y)
    theta[-1] = prior.clamp_min(1e-12).log()
    return theta


