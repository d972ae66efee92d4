"""Tip-Adapter(-F): zero-shot logits plus a cache of the shots, keys optionally fine-tuned; alpha, beta by leave-one-out."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from threadpoolctl import threadpool_limits

from probes.fewshot._common import FewShotHead, check_grid, l2rows, softmax
from probes.fewshot._text import text_problem


def tip_logits(x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, t: torch.Tensor, *, scale: float,
               alpha: float, beta: float, mask_self: bool = False) -> torch.Tensor:
    """Eq. 6 of Tip-Adapter: s x T^T + alpha * exp(-beta (1 - x K^T)) L; mask_self drops key i for query i."""
    aff = torch.exp(-beta * (1 - x @ keys.T))
    if mask_self:
        aff = aff * (1 - torch.eye(len(x), len(keys)))
    return scale * x @ t.T + alpha * aff @ values


class TipAdapterHead(FewShotHead):
    """Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification" (ECCV 2022),
    Eq. 6: logits = s f T^T + alpha A(f F^T) L with A(u) = exp(-beta (1 - u)), F the unit features of
    the shots (the cache keys), L their one-hot labels; Tip-Adapter-F (Sec. 3.3) fine-tunes F with
    AdamW (lr 1e-3, cosine schedule, 20 epochs, batch 256).
    Simplified for cached features: no augmented views of the shots, so a shot is never matched to its
    own key while fine-tuning or selecting (leave-one-out), and alpha, beta are chosen on the shots by
    leave-one-out over a grid instead of on a validation split; with 1 shot per class the rule is
    the paper's ImageNet setting alpha = 1, beta = 5.5.

    Parameters
    ----------
    finetune : bool, default True (Tip-Adapter-F; False is the training-free Tip-Adapter)
    alpha : float or sequence, default (0.3, 1, 3, 10, 30, 100) (>= 0)
    beta : float or sequence, default (1, 3, 5.5, 8, 12) (> 0)
    epochs : int, default 20; lr : float, default 1e-3; logit_scale : float or None, default None
    seed : int, default 0

    Fitted: `classes_`, `keys_` [N, D], `values_` [N, K], `text_`, `alpha_`, `beta_`, `logit_scale_`, `selection_`.
    """

    needs_text = True

    def __init__(self, *, finetune: bool = True, alpha: float | Sequence[float] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                 beta: float | Sequence[float] = (1.0, 3.0, 5.5, 8.0, 12.0), epochs: int = 20, lr: float = 1e-3,
                 logit_scale: float | None = None, seed: int = 0) -> None:
        self.finetune = finetune
        self.alpha = alpha
        self.beta = beta
        self.epochs = epochs
        self.lr = lr
        self.logit_scale = logit_scale
        self.seed = seed

    def _validate_params_(self) -> None:
        check_grid("alpha", self.alpha, low=0.0)
        check_grid("beta", self.beta, low=0.0, open_low=True)
        if self.epochs < 0 or not self.lr > 0:
            raise ValueError(f"need epochs >= 0 and lr > 0; got {self.epochs}, {self.lr}")

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        p = text_problem(X, y, text, self.logit_scale)
        x, t = torch.as_tensor(p.x), torch.as_tensor(p.t)
        yt = torch.as_tensor(p.y)
        values = torch.nn.functional.one_hot(yt, len(p.t)).float()
        grid = [(float(a), float(b)) for a in np.atleast_1d(self.alpha) for b in np.atleast_1d(self.beta)]
        if len(grid) == 1:
            (alpha, beta), how = grid[0], "fixed"
        elif np.bincount(p.y).min() >= 2:
            with torch.no_grad():
                accs = [float((tip_logits(x, x, values, t, scale=p.scale, alpha=a, beta=b, mask_self=True)
                               .argmax(1) == yt).float().mean()) for a, b in grid]
            (alpha, beta), how = grid[int(np.argmax(accs))], "leave-one-out on the shots"
        else:
            (alpha, beta), how = (1.0, 5.5), "rule (1 shot: alpha=1, beta=5.5, the paper's ImageNet values)"
        keys = self._finetune(x, yt, values, t, p.scale, alpha, beta) if self.finetune else x
        self.keys_, self.values_, self.text_ = keys.numpy(), values.numpy(), p.t
        self.alpha_, self.beta_, self.logit_scale_, self.selection_ = alpha, beta, p.scale, how
        self.classes_ = np.arange(len(p.t))

    def _finetune(self, x: torch.Tensor, y: torch.Tensor, values: torch.Tensor, t: torch.Tensor, scale: float,
                  alpha: float, beta: float) -> torch.Tensor:
        """AdamW on the keys with a cosine schedule; analytic gradient in numpy (small matmuls, no autograd overhead)."""
        xs, vals, yy = x.numpy().astype(np.float32), values.numpy(), y.numpy()
        zs = scale * xs @ t.numpy().T
        keys = xs.copy()
        m, v = np.zeros_like(keys), np.zeros_like(keys)
        rng = np.random.default_rng(self.seed)
        batch, b1, b2, eps, wd = 256, 0.9, 0.999, 1e-4, 0.01
        steps, step = self.epochs * -(-len(xs) // batch), 0
        with threadpool_limits(1, user_api="blas"):
            for _ in range(self.epochs):
                for idx in np.array_split(rng.permutation(len(xs)), -(-len(xs) // batch)):
                    aff = np.exp(-beta * (1 - xs[idx] @ keys.T))
                    aff[np.arange(len(idx)), idx] = 0.0  # never its own key
                    r = softmax(zs[idx] + alpha * aff @ vals)
                    r[np.arange(len(idx)), yy[idx]] -= 1
                    g = ((alpha * beta / len(idx)) * (r @ vals.T) * aff).T @ xs[idx]
                    lr = self.lr * 0.5 * (1 + np.cos(np.pi * step / max(steps, 1)))
                    step += 1
                    keys *= 1 - lr * wd
                    m = b1 * m + (1 - b1) * g
                    v = b2 * v + (1 - b2) * g * g
                    keys -= lr * (m / (1 - b1 ** step)) / (np.sqrt(v / (1 - b2 ** step)) + eps)
        return torch.as_tensor(keys)

    def decision_function(self, X: Any) -> np.ndarray:
        x = torch.as_tensor(l2rows(self._check_X(X)))
        with torch.no_grad():
            return tip_logits(x, torch.as_tensor(self.keys_), torch.as_tensor(self.values_), torch.as_tensor(self.text_),
                              scale=self.logit_scale_, alpha=self.alpha_, beta=self.beta_).numpy()
