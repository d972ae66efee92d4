"""G MLP heads as stacked tensors: one wide matmul per layer for a whole grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MLPSpec:
    """What may differ between the heads of one batched training."""

    lr: float
    weight_decay: float
    hidden: tuple[int, ...]
    dropout: float




@dataclass
class StackedMLP:
    """G MLPs as stacked tensors: ``weights[i]`` is [G, fan_in, fan_out], ``biases[i]``
    [G, fan_out], ``masks[i]`` [G, fan_out] switches off the padding of narrower heads."""

    weights: list[Tensor]
    biases: list[Tensor]
    masks: list[Tensor]
    dropout: Tensor  # [G, 1, 1]
    # A frozen linear head shared by all heads, added to their logits (``weight`` [d, K], ``bias``
    # [K]): the residual MLP starts from the logistic solution and learns only what it misses.
    skip: tuple[Tensor, Tensor] | None = None

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
        if self.skip is not None:
            h = h + torch.addmm(self.skip[1], x, self.skip[0])[None]
        return h

    def head(self, g: int) -> list[tuple[Tensor, Tensor]]:
        """Head ``g`` as ``(weight [fan_out, fan_in], bias)`` per layer, padding removed."""
        widths = [int(m[g].sum().item()) for m in self.masks]
        fan_in = [self.weights[0].shape[1], *widths]
        return [(w[g, :fan_in[i], :widths[i]].T.contiguous(), b[g, :widths[i]].clone())
                for i, (w, b) in enumerate(zip(self.weights, self.biases))]


def init_stacked(specs: list[MLPSpec], d: int, n_classes: int, *, seed: int, device: torch.device,
                 skip: tuple[Tensor, Tensor] | None = None) -> StackedMLP:
    """nn.Linear's init distribution (uniform, bound 1/sqrt(fan_in)), drawn once at the widest
    widths and shared by all heads (rescaled to each head's own fan-in, padding zeroed): heads
    differ only by their hyper-parameters, and ``MLPHead`` is the one-head case. With ``skip``
    (a frozen linear head added to the logits) the output layer starts at zero, so every head
    starts exactly at the linear head (as zero-initialised residual branches do)."""
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
    if skip is not None:
        weights[-1].zero_()
        biases[-1].zero_()
        skip = (skip[0].to(device), skip[1].to(device))
    to = lambda ts: [t.to(device) for t in ts]  # noqa: E731
    dropout = torch.tensor([s.dropout for s in specs], device=device)[:, None, None]
    return StackedMLP(to(weights), to(biases), to(masks), dropout, skip)



def forward_autocast(model: StackedMLP, x: Tensor, *, dtype: torch.dtype,
                     noise: list[Tensor] | None = None) -> Tensor:
    """Forward pass with bf16 matmuls (fp32 accumulation) when ``dtype`` asks for them."""
    if dtype == torch.float32:
        return model.forward(x, noise=noise)
    with torch.autocast(x.device.type, dtype=dtype):
        return model.forward(x, noise=noise)


