"""--compile: one transformer block compiled and reused by every block, and batches padded to one fixed size.

Why not torch.compile(model): EVA-g has 40 identical blocks; compiling the whole graph traces and
optimises all 40 (minutes of start-up per rank), and a partial last batch changes the input shape, which
recompiles. Compiling the block (PyTorch's "regional compilation") traces one block: the others run the
same compiled code with their own weights (dynamo lifts parameters to inputs, so instances share the
graph). Padding every chunk to the fixed batch size keeps one input shape for the whole run.
"""

from __future__ import annotations

import torch


def repeated_blocks(model: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    """The longest list of same-class blocks: timm's `blocks`, open_clip's `transformer.resblocks`.

    Returns (its qualified name, the ModuleList / Sequential), or None when the model has no such list."""
    best: tuple[str, torch.nn.Module] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)) or len(module) < 2:
            continue
        if len({type(child) for child in module}) == 1 and (best is None or len(module) > len(best[1])):
            best = (name, module)
    return best


def compile_blocks(model: torch.nn.Module, *, backend: str | object = "inductor") -> torch.nn.Module:
    """Compile each repeated block in place (they share one compiled graph); a model without repeated
    blocks (a CNN trunk, `pixels`) is compiled whole, which is what --compile did before."""
    found = repeated_blocks(model)
    if found is None:
        return torch.compile(model, backend=backend)
    for block in found[1]:
        block.compile(backend=backend)
    return model


def pad_rows(x: torch.Tensor, size: int) -> torch.Tensor:
    """`x` with zero rows appended up to `size` rows (the caller drops their outputs). Every image of a
    vision transformer is computed on its own, so the real rows do not change; the shape stays fixed."""
    if len(x) >= size:
        return x
    return torch.cat([x, x.new_zeros((size - len(x), *x.shape[1:]))])
