"""Image views stored beside the original: each is a function on the preprocessed uint8 batch."""

from __future__ import annotations

from collections.abc import Callable

import torch

from featstore.errors import ExtractionError

ORIG = "orig"

VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    ORIG: lambda x: x,
    # After the eval geometry (resize, crop), so the view is the flip of exactly what the model sees.
    "hflip": lambda x: torch.flip(x, dims=(-1,)),
}


def parse_views(text: str | None) -> tuple[str, ...]:
    """`orig,hflip` -> ("orig", "hflip"); the original view always comes first (it owns today's key)."""
    names = tuple(v.strip() for v in (text or ORIG).split(",") if v.strip())
    unknown = [v for v in names if v not in VIEWS]
    if unknown:
        raise ExtractionError(f"unknown view {', '.join(map(repr, unknown))}; known: {', '.join(VIEWS)}")
    if len(set(names)) != len(names):
        raise ExtractionError(f"--views names a view twice: {text}")
    return (ORIG, *(v for v in names if v != ORIG))


def apply_view(name: str, pixels: torch.Tensor) -> torch.Tensor:
    return VIEWS[name](pixels)
