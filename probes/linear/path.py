"""The penalty path at one shrinkage: warm-started solves scored on val (``LamPath``, ``Fit``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from probes.linear.design import Design, SolverOptions
from probes.linear.lbfgs import CurvaturePairs, minimize

if TYPE_CHECKING:
    from probes.linear.objective import SoftmaxProblem

# A search point is first solved this much more loosely, enough to see it is clearly worse.
_PROBE_FACTOR = 10.0


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



class LamPath:
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
        self.memory = CurvaturePairs(options.history)

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


