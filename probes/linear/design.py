"""What a search needs of its train data (``Design``) and the in-memory one (``Whitened``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from probes.linear.eigenbasis import Eigenbasis, whiten
from probes.linear.objective import PenalisedProblem, Scratch, SoftmaxProblem, initial_theta


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
        """The penalised objective on these features (``linear.streamed.StreamedDesign`` streams it instead)."""
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
    ``linear.streamed.StreamedDesign`` (read block by block from the store)."""

    basis: Eigenbasis
    base: float
    z_val: Tensor | None
    y_val: Tensor | None

    def problem(self, theta: Tensor, lam: float, *, weights: Tensor, variance: Tensor) -> PenalisedProblem: ...

    def initial_theta(self, n_classes: int) -> Tensor: ...


