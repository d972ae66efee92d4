"""AdamW over stacked heads, each head with its own learning rate and weight decay."""

from __future__ import annotations

import math

import torch
from torch import Tensor


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


