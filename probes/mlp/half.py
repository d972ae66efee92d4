"""Weights rounded to fp16 at the end of a fit, so that a saved run is half the size and reloads bit for bit."""

from __future__ import annotations

import torch
from torch import Tensor


def round_to_half(t: Tensor) -> Tensor:
    """``t`` rounded to the nearest fp16 values, kept in float32 (what the head computes with), or
    ``t`` itself when a value would overflow fp16: a head never stores an infinity."""
    rounded = t.half().float()
    return rounded if bool(torch.isfinite(rounded).all()) else t


def as_stored(t: Tensor) -> Tensor:
    """The tensor to save: fp16 when that holds ``t`` exactly (after ``round_to_half``), else ``t``."""
    half = t.half()
    return half if torch.equal(half.float(), t.float()) else t
