"""The closed-form one-hot ridge path, scored on val from one eigendecomposition."""

from __future__ import annotations

import torch
from torch import Tensor

from probes.linear.eigenbasis import Eigenbasis


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


