"""torch's OneCycleLR schedule as a pure function of the step."""

from __future__ import annotations

import math


def onecycle(step: int, total: int, *, pct_start: float = 0.3, div: float = 25.0,
             final_div: float = 1e4) -> tuple[float, float]:
    """``(lr / max_lr, beta1)`` at ``step`` of torch's ``OneCycleLR`` with its defaults
    (cosine warm-up over 30%, cosine decay to max_lr/25/1e4, beta1 cycled 0.95 -> 0.85 -> 0.95)."""
    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    peak = float(pct_start * total) - 1
    if step <= peak:
        pct = step / peak
        return anneal(1 / div, 1.0, pct), anneal(0.95, 0.85, pct)
    pct = (step - peak) / (total - 1 - peak)
    return anneal(1.0, 1 / div / final_div, pct), anneal(0.85, 0.95, pct)


