"""Hyper-parameter sweeps: a head's own batched ``fit_grid`` when it has one, else one clone per configuration."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from sklearn.base import clone

from probes.heads.registry import create_head
from probes.progress import stage


@dataclass
class SweepResult:
    """``table``: one row per configuration (its params, ``val_top1``, ``val_loss``, ...)."""

    table: list[dict[str, Any]]
    best_params: dict[str, Any]
    best_head: Any


def sweep(kind: str, grid: dict[str, list[Any]], X: Any, y: Any, X_val: Any, y_val: Any, *,
          base_params: dict[str, Any] | None = None, fit_kw: dict[str, Any] | None = None) -> SweepResult:
    """Train every combination of ``grid`` (a product over its keys) and select on val.

    ``X`` is an array (with ``y``) or a ``TrainSource`` (``y`` None) for heads that stream.
    ``fit_kw`` go to every ``fit`` (e.g. ``text`` for text-aware heads). ``base_params`` go to every head (e.g. ``epochs``); grid values override them. The best
    configuration is the highest val top-1, ties to the lower val loss; ``best_head`` is that
    head, already fitted.
    """
    head = create_head(kind, **(base_params or {}))
    if not grid:
        raise ValueError(f"empty sweep: the grid has no parameters (valid: {', '.join(sorted(head.get_params()))})")
    empty = sorted(k for k, v in grid.items() if len(list(v)) == 0)
    if empty:
        raise ValueError(f"empty sweep: {empty} have no values")
    if hasattr(head, "fit_grid"):
        table = head.fit_grid(X, y, X_val=X_val, y_val=y_val, grid=grid)
        return SweepResult(table, {k: head.get_params()[k] for k in grid}, head)
    return _sweep_by_clones(head, grid, X, y, X_val, y_val, fit_kw or {})


def _sweep_by_clones(head: Any, grid: dict[str, list[Any]], X: Any, y: Any, X_val: Any, y_val: Any,
                     fit_kw: dict[str, Any]) -> SweepResult:
    """Heads without a batched grid: fit a clone per configuration, score on val."""
    import numpy as np

    from probes.calibration import log_probabilities

    unknown = sorted(set(grid) - set(head.get_params()))
    if unknown:
        raise ValueError(f"unknown grid parameter(s) {unknown}; valid: {', '.join(sorted(head.get_params()))}")
    keys, table, best = list(grid), [], None
    configs = list(itertools.product(*(grid[k] for k in keys)))
    progress = stage("configuration", len(configs))
    for values in configs:
        config = dict(zip(keys, values))
        fitted = clone(head).set_params(**config).fit(X, y, **fit_kw)
        logp = log_probabilities(fitted, X_val)
        codes = np.searchsorted(fitted.classes_, y_val)
        row = {**config, "val_top1": float((logp.argmax(1) == codes).mean()),
               "val_loss": float(-logp[np.arange(len(codes)), codes].mean())}
        table.append(row)
        if best is None or (row["val_top1"], -row["val_loss"]) > (best[0]["val_top1"], -best[0]["val_loss"]):
            best = (row, config, fitted)
        progress.advance(note=f"best val top-1 {best[0]['val_top1']:.2%}")
    progress.close()
    return SweepResult(table, best[1], best[2])
