"""The batched MLP trainer: epochs of minibatches, per-head early stopping on val."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from probes.denormals import without_denormals
from probes.mlp.adamw import StackedAdamW
from probes.mlp.batches import Batches
from probes.mlp.schedule import onecycle
from probes.mlp.stacked import MLPSpec, StackedMLP, forward_autocast
from probes.progress import stage


@dataclass(frozen=True)
class TrainOptions:
    """What the heads of one batched training share (data order, schedule, precision)."""

    epochs: int = 30
    batch_size: int = 256
    label_smoothing: float = 0.1
    early_stopping: bool = True
    patience: int = 5
    dtype: torch.dtype = torch.float32
    seed: int = 0




@dataclass
class TrainReport:
    """Per-head outcome of a batched training; ``history`` holds (val top-1, val loss) per
    epoch as [G] tensors."""

    best_epoch: Tensor
    val_top1: Tensor
    val_loss: Tensor
    epochs_run: int
    history: list[tuple[Tensor, Tensor]]


@torch.no_grad()
def evaluate_stacked(model: StackedMLP, X: Tensor, y: Tensor, *, dtype: torch.dtype,
                     batch: int = 4096) -> tuple[Tensor, Tensor]:
    """Val top-1 and mean cross-entropy (no smoothing) of every head, [G] each."""
    correct, loss = 0.0, 0.0
    for i in range(0, len(X), batch):
        logits = forward_autocast(model, X[i:i + batch], dtype=dtype).float()
        yb = y[i:i + batch]
        correct = correct + (logits.argmax(-1) == yb).float().sum(1)
        loss = loss - torch.log_softmax(logits, -1).gather(
            -1, yb.expand(logits.shape[0], -1)[..., None])[..., 0].sum(1)
    return correct / len(X), loss / len(X)




class BestKeeper:
    """Early stopping for G heads at once: each head keeps the weights of its best val epoch
    (higher top-1, ties to lower loss) and counts the epochs since."""

    def __init__(self, params: list[Tensor], n_heads: int) -> None:
        self.best = [p.detach().clone() for p in params]
        device = params[0].device
        self.top1 = torch.full((n_heads,), -1.0, device=device)
        self.loss = torch.full((n_heads,), math.inf, device=device)
        self.epoch = torch.zeros(n_heads, dtype=torch.long, device=device)
        self.stale = torch.zeros(n_heads, dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, epoch: int, top1: Tensor, loss: Tensor, params: list[Tensor]) -> None:
        better = (top1 > self.top1) | ((top1 == self.top1) & (loss < self.loss))
        self.top1 = torch.where(better, top1, self.top1)
        self.loss = torch.where(better, loss, self.loss)
        self.epoch = torch.where(better, torch.full_like(self.epoch, epoch), self.epoch)
        self.stale = torch.where(better, torch.zeros_like(self.stale), self.stale + 1)
        for kept, p in zip(self.best, params):
            kept[better] = p.detach()[better]

    @torch.no_grad()
    def restore(self, params: list[Tensor]) -> None:
        for kept, p in zip(self.best, params):
            p.copy_(kept)




def _epoch(model: StackedMLP, opt: StackedAdamW, train: Batches, *, step: int,
           total: int, options: TrainOptions, gen: torch.Generator) -> int:
    """One pass over shuffled minibatches; returns the global step reached."""
    params = model.params()
    widths = [m.shape[1] for m in model.masks[:-1]]
    dropout = bool((model.dropout > 0).any())
    for xb, yb in train.epoch(options.batch_size, gen):
        noise = [torch.rand(len(xb), w, generator=gen, device=xb.device) for w in widths] \
            if dropout else None
        logits = forward_autocast(model, xb, dtype=options.dtype, noise=noise).float()
        k = logits.shape[-1]
        # Sum over heads of each head's mean loss: heads get independent gradients.
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, k), yb.repeat(logits.shape[0]),
            label_smoothing=options.label_smoothing, reduction="sum") / len(xb)
        grads = torch.autograd.grad(loss, params)
        lr_factor, beta1 = onecycle(min(step, total - 1), total)
        opt.step(list(grads), lr_factor=lr_factor, beta1=beta1)
        step += 1
    return step


@without_denormals
def train_stacked(model: StackedMLP, specs: list[MLPSpec], train: Batches,
                  val: tuple[Tensor, Tensor] | None, options: TrainOptions) -> TrainReport:
    """Train every head of ``model`` together; with ``val`` and early stopping each head ends
    with its best epoch's weights, and training stops once every head has gone ``patience``
    epochs without improving."""
    params = [p.requires_grad_(True) for p in model.params()]
    device = params[0].device
    opt = StackedAdamW(params, torch.tensor([s.lr for s in specs], device=device),
                       torch.tensor([s.weight_decay for s in specs], device=device))
    total = options.epochs * math.ceil(train.n / options.batch_size)
    gen = torch.Generator(device=device).manual_seed(options.seed)
    keeper, history, step, epoch = BestKeeper(params, len(specs)), [], 0, 0
    together = f" ({len(specs)} configurations together)" if len(specs) > 1 else ""
    progress = stage(f"epoch{together}", options.epochs)
    # A residual model starts at its linear head: epoch 0 is a candidate, so early stopping never
    # ends below the linear head on val.
    for epoch in range(0 if model.skip is not None else 1, options.epochs + 1):
        if epoch:
            step = _epoch(model, opt, train, step=step, total=total, options=options, gen=gen)
        if val is None:
            progress.advance(1 if epoch else 0)
            continue
        top1, loss = evaluate_stacked(model, *val, dtype=options.dtype)
        history.append((top1.cpu(), loss.cpu()))
        keeper.update(epoch, top1, loss, params)
        progress.advance(1 if epoch else 0, note=f"best val top-1 {float(keeper.top1.max()):.2%}")  # epoch 0: no step
        if options.early_stopping and bool((keeper.stale >= options.patience).all()):
            break
    progress.close()
    if val is not None and options.early_stopping:
        keeper.restore(params)
    for p in params:
        p.requires_grad_(False)
    if val is None:
        nan = torch.full((len(specs),), math.nan)
        return TrainReport(torch.full((len(specs),), epoch), nan, nan, epoch, history)
    last_top1, last_loss = history[-1]
    if options.early_stopping:
        return TrainReport(keeper.epoch.cpu(), keeper.top1.cpu(), keeper.loss.cpu(), epoch, history)
    return TrainReport(torch.full((len(specs),), epoch), last_top1, last_loss, epoch, history)


