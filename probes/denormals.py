"""Denormal floats flushed to zero around hot loops (x86 handles them 10-20x slower)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero inside: Adam's second moments and tiny softmax
    probabilities underflow into them, and x86 CPUs handle them 10-20x slower (measured:
    sqrt of 1.4M denormals 26 ms vs 3.4 ms). Restores torch's default (off) on exit."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def without_denormals(fn: Callable) -> Callable:
    """Decorator form of ``flush_denormals``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with flush_denormals():
            return fn(*args, **kwargs)
    return wrapper

