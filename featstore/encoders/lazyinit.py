"""Models built without a wasted random init: parameters on the meta device, the checkpoint assigned once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch


@contextmanager
def meta_parameters() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device: no memory, and init costs nothing.

    Only parameters move: buffers stay real because non-persistent ones (RoPE tables, attention masks,
    relative position indexes) are computed in `__init__` and are not in any checkpoint. A random init of
    1B parameters on the CPU took longer than reading the weights that then overwrite it.
    """
    original = torch.nn.Module.register_parameter

    def register(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    torch.nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original  # type: ignore[method-assign]


@contextmanager
def assigning_load(model: torch.nn.Module) -> Iterator[None]:
    """Inside, `model.load_state_dict` (as the libraries' own loaders call it) assigns the checkpoint's
    tensors instead of copying them into the meta parameters, cast to each parameter's dtype and made
    contiguous, so the result is what a copy into an fp32 model would hold."""
    original = model.load_state_dict
    targets = model.state_dict(keep_vars=True)

    def load(state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        fitted = {k: _like(v, targets.get(k)) for k, v in state_dict.items()}
        return original(fitted, strict=strict, assign=True)

    model.load_state_dict = load  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.load_state_dict  # back to the class method


def _like(value: Any, target: torch.Tensor | None) -> Any:
    if not isinstance(value, torch.Tensor) or target is None:
        return value
    return value.to(dtype=target.dtype).contiguous()


def unset(model: torch.nn.Module) -> list[str]:
    """Parameters and buffers still on the meta device: what the checkpoint did not fill."""
    return [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]


def build_then_load(build: Callable[[], torch.nn.Module], *, library: ModuleType, loader: str,
                    ) -> torch.nn.Module | None:
    """`build()` (a library factory asked for pretrained weights) without the random init it would overwrite.

    The library's own loader (`library.<loader>`, looked up there at call time) is what turns a checkpoint
    into this model's state dict (key fixes, classifier removal, pos-embed resampling), so it is kept: while
    the architecture is built on meta parameters the call is only recorded, then made once with assigning
    loads. None when the build fails on meta, when the library did not call its loader exactly once on the
    model it returned, or when that call left tensors unset (a checkpoint lacking keys, a custom loader
    that copies into parameters): the caller then takes the library's plain path, which loads (or
    refuses) the file the way it always did.
    """
    calls: list[tuple[tuple, dict]] = []
    real = getattr(library, loader)
    setattr(library, loader, lambda *a, **k: calls.append((a, k)))
    try:
        with meta_parameters():
            model = build()
    except Exception:  # an architecture that cannot be built on meta: the plain path builds it (or says why)
        return None
    finally:
        setattr(library, loader, real)
    if len(calls) != 1 or calls[0][0][:1] != (model,):
        return None
    args, kw = calls[0]
    with assigning_load(model):
        real(*args, **kw)
    return None if unset(model) else model
