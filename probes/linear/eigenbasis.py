"""The train features normalised and eigendecomposed once; whitened coordinates from it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Relative variance below which a feature counts as constant (scale 0, not 1/0).
_CONSTANT_VARIANCE = 1e-10
# Rows per block where a whole-split temporary ([n, d]) would only be consumed block by block.
_BLOCK_ROWS = 8192


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



def whiten(basis: Eigenbasis, X: Tensor, shrink: float, *, dtype: torch.dtype) -> Tensor:
    """Whitened features plus a trailing column of ones for the bias ([n, d+1], ``dtype``)."""
    proj = basis.projector(shrink).to(dtype)
    z = torch.empty(len(X), proj.shape[1] + 1, dtype=dtype, device=X.device)
    z[:, -1] = 1
    for lo in range(0, len(X), _BLOCK_ROWS):  # written in place, block by block: no [n, d] temporaries
        z[lo:lo + _BLOCK_ROWS, :-1] = (X[lo:lo + _BLOCK_ROWS] - basis.mean).to(dtype) @ proj
    return z


