"""The softmax objective with the train rows streamed block by block: memory O(d^2 + block * (d + K)), never O(n * d).

Same model, same search and same answer as ``LogisticHead`` in memory (``probes.linear``); only the way
the train rows are reached differs. n train rows, d features, K classes:

* **Statistics pass** (float64 accumulators over float32 block products, blocks shifted by the first
  block's mean so ``X^T X`` does not cancel): ``n``, the mean, the covariance, the class sums ``Y^T X``
  and the class counts. They give the eigenbasis (``linear.eigenbasis``) and the whole ridge path
  (``linear.ridge.ridge_scores``) with no further pass.
* **Search** (``linear.search.search_logistic``, unchanged) over ``StreamedDesign``: its problems never hold
  the whitened ``z = (x - mean) P`` ([n, d]) nor its logits ([n, K]). One pass evaluates
  ``logits = (x - mean) @ (P theta_U) + theta_b`` block by block, never whitening a row.
* **One pass per L-BFGS iteration.** The pass multiplies each block by ``[P theta | P p]`` (current
  point and search direction, one matmul of width 2K), scores the objective at the step lengths
  ``t = 1, 1/2, 1/4`` and, speculatively, the gradient at ``t = 1`` (``(x - mean)^T (softmax - Y)``,
  mapped back by ``P^T``). The well-scaled L-BFGS step is almost always taken whole, so an iteration
  is one read of the data; a shorter step costs a second pass for its gradient.
* Blocks arrive as fp16 from the shards, are centred in a reused float32 buffer and rounded into a
  reused matmul buffer (bf16 where the CPU/GPU has fast bf16): no allocation per block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from probes.linear.eigenbasis import Eigenbasis, whiten
from probes.linear.objective import _ARMIJO, _MAX_BACKTRACKS, PenalisedProblem, dot
from probes.sources.blocks import BlockList, Buffers

# Step lengths scored by one pass (each costs a softmax over the block, not a matmul).
_STEPS = (1.0, 0.5, 0.25)


class StreamedDesign:
    """``linear.design.Design`` for the train split read block by block: the eigenbasis, the val split
    whitened in memory (it is small), and ``problem`` objectives that stream the train blocks."""

    def __init__(self, blocks: BlockList, basis: Eigenbasis, *, base: float, classes: np.ndarray,
                 counts: Tensor, val: tuple[Tensor, Tensor] | None, dtype: torch.dtype, device: torch.device) -> None:
        self.blocks, self.basis, self.base, self.classes = blocks, basis, base, classes
        self.counts, self.n = counts, int(counts.sum().item())
        self.dtype, self.device = dtype, device
        self.proj = basis.projector(base)  # P: whitened coordinates are (x - mean) @ P
        self.z_val = None if val is None else whiten(basis, val[0], base, dtype=dtype)
        self.y_val = None if val is None else val[1]
        self.buffers = Buffers(basis.mean.numel(), dtype, device)
        self.passes = 0

    def problem(self, theta: Tensor, lam: float, *, weights: Tensor, variance: Tensor) -> StreamedSoftmaxProblem:
        return StreamedSoftmaxProblem(self, theta, lam, weights=weights, variance=variance)

    def initial_theta(self, n_classes: int) -> Tensor:
        theta = torch.zeros(self.proj.shape[1] + 1, n_classes, device=self.device)
        theta[-1] = (self.counts.float() / self.n).clamp_min(1e-12).log().to(self.device)
        return theta

    def rows(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """One pass: ``(x - mean)`` in float32 and in the matmul dtype, and the label codes, per block."""
        self.passes += 1
        mean = self.basis.mean
        for xb, yb in self.blocks():
            x = self.buffers.load(xb, mean)
            codes = torch.from_numpy(np.searchsorted(self.classes, np.asarray(yb)).astype(np.int64))
            yield x, self.buffers.low_precision(x), codes.to(self.device)

    def weights(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Whitened ``theta = [U; b]`` as weights on centred raw features: ``(P U, b)``."""
        return self.proj @ theta[:-1], theta[-1]


class StreamedSoftmaxProblem(PenalisedProblem):
    """``objective.SoftmaxProblem`` with the train data streamed: the same objective, gradient and diagonal
    model; ``step`` scores several step lengths per pass (module docstring)."""

    def __init__(self, data: StreamedDesign, theta: Tensor, lam: float, *, weights: Tensor,
                 variance: Tensor) -> None:
        self.data, self.lam, self.weights, self.variance = data, lam, weights, variance
        self.theta = theta.clone()
        losses, self.grad, self.curvature = self._pass(self.theta, None)
        self.value = losses[0] + self._penalty(self.theta, self.theta)

    @torch.no_grad()
    def _pass(self, theta: Tensor, p: Tensor | None) -> tuple[list[float], Tensor, Tensor]:
        """Mean cross-entropy at ``theta + t p`` for every ``t`` in ``_STEPS`` (only ``t = 0`` without
        ``p``), and the data gradient and softmax curvature at the first of them; one read of the data."""
        data, k = self.data, theta.shape[1]
        wt, b = data.weights(theta)
        steps = _STEPS if p is not None else (0.0,)
        if p is not None:
            wp, bp = data.weights(p)
            wt, b = torch.cat([wt, wp], 1), torch.cat([b, bp])
        w_low = wt.to(data.dtype)
        losses = torch.zeros(len(steps), dtype=torch.float64, device=wt.device)
        grad_x = torch.zeros_like(wt[:, :k])
        grad_b = torch.zeros(k, device=wt.device)
        curvature = torch.zeros(k, device=wt.device)
        for x, x_low, y in data.rows():
            out = torch.addmm(b, x, wt) if data.dtype == torch.float32 else (x_low @ w_low).float().add_(b)
            for j, t in enumerate(steps):
                logits = out[:, :k] if p is None else torch.add(out[:, :k], out[:, k:], alpha=t)
                logp = torch.log_softmax(logits, 1)
                losses[j] -= logp.gather(1, y[:, None]).sum(dtype=torch.float64)
                if j == 0:
                    r = logp.exp_()
                    curvature += (r - r * r).sum(0)
                    r[torch.arange(len(y), device=y.device), y] -= 1.0
                    grad_b += r.sum(0)
                    if data.dtype == torch.float32:
                        grad_x.addmm_(x.T, r)
                    else:  # P - Y rounded as a whole, as the in-memory solver does
                        grad_x += (x_low.T @ r.to(data.dtype)).float()
        n = data.n
        theta_t = theta if p is None else theta + steps[0] * p
        grad = torch.cat([data.proj.T @ grad_x, grad_b[None, :]], 0).div_(n)
        grad.add_(self.weights * theta_t, alpha=self.lam)
        return [float(v) / n for v in losses.cpu()], grad, (curvature / n)[None, :]

    def step(self, p: Tensor) -> tuple[Tensor, Tensor] | None:
        """Armijo backtracking along ``p``, three step lengths per pass; ``(s, dgrad)`` or None."""
        slope = dot(self.grad, p)
        if not slope < 0:
            return None
        pen = (self._penalty(self.theta, self.theta), 2 * self._penalty(self.theta, p), self._penalty(p, p))
        scale = 1.0
        for _ in range(_MAX_BACKTRACKS // len(_STEPS)):
            losses, grad, curvature = self._pass(self.theta, p * scale)
            for j, t in enumerate(_STEPS):
                ts = t * scale
                value = losses[j] + pen[0] + ts * pen[1] + ts * ts * pen[2]
                if value <= self.value + _ARMIJO * ts * slope:
                    s = p * ts
                    self.theta.add_(s)
                    old_grad = self.grad
                    if j == 0:
                        self.grad, self.curvature, self.value = grad, curvature, value
                    else:  # the gradient was computed at the first step length only: one more pass
                        losses, self.grad, self.curvature = self._pass(self.theta, None)
                        self.value = losses[0] + self._penalty(self.theta, self.theta)
                    return s, self.grad - old_grad
            scale *= _STEPS[-1] / 2
        return None
