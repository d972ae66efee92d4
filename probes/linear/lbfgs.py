"""L-BFGS with curvature pairs that survive changes of the penalty strength."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from probes.denormals import without_denormals
from probes.linear.objective import PenalisedProblem, dot

# Relative decrease under which an iteration is noise (a few float32 ulps of the objective).
_STALL = 1e-7
# Convergence is relative to the objective, floored for nearly separable problems (f -> 0).
_LOSS_FLOOR = 1e-2


@dataclass
class CurvaturePairs:
    """L-BFGS curvature pairs ``(s, y)``; they survive changes of ``lam`` (module docstring)."""

    history: int
    s: list[Tensor] = field(default_factory=list)
    y: list[Tensor] = field(default_factory=list)

    def push(self, s: Tensor, y: Tensor) -> None:
        if dot(s, y) > 1e-10 * dot(y, y):  # keeps the inverse-Hessian estimate positive
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
            rho = 1.0 / dot(s, y)
            a = rho * dot(s, q)
            q.add_(y, alpha=-a)
            coefs.append((rho, a))
        # The diagonal model gives the shape; the newest pair rescales it (Nocedal & Wright's
        # gamma for a diagonal start), which absorbs what the model gets wrong in size.
        gamma = dot(self.s[-1], self.y[-1]) / dot(self.y[-1] * h0, self.y[-1]) if self.s else 1.0
        q.mul_(h0).mul_(gamma)
        for (s, y), (rho, a) in zip(zip(self.s, self.y), reversed(coefs)):
            q.add_(s, alpha=a - rho * dot(y, q))
        return q.neg_()



@without_denormals
def minimize(problem: PenalisedProblem, memory: CurvaturePairs, *, max_iter: int, tol: float) -> int:
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


