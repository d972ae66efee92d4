"""Hyper-parameter sweeps that train a whole grid of heads in one batched computation."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes import solvers
from probes.heads import LogisticHead, MLPHead, as_widths

# Grid keys per head kind. Logistic: the (C, shrink) grid shares one eigendecomposition and
# one whitening, and walks warm-started L-BFGS paths. MLP: every head trains at once as
# stacked tensors (one wide matmul per layer), with per-head learning rate and weight decay.
GRID_KEYS = {"logistic": ("C", "shrink"), "mlp": ("lr", "weight_decay", "hidden", "dropout")}


@dataclass
class SweepResult:
    """``table``: one row per configuration (its params, ``val_top1``, ``val_loss``, ...)."""

    table: list[dict[str, Any]]
    best_params: dict[str, Any]
    best_head: LogisticHead | MLPHead


def sweep(kind: str, grid: dict[str, list[Any]], X: Any, y: Any, X_val: Any, y_val: Any, *,
          seed: int = 0, device: str = "auto",
          base_params: dict[str, Any] | None = None) -> SweepResult:
    """Train every combination of ``grid`` (a product over its keys) and select on val.

    ``base_params`` go to every head (e.g. ``epochs``); grid values override them. The best
    configuration is the highest val top-1, ties to the lower val loss; ``best_head`` is
    that head, already fitted.
    """
    check_grid(kind, grid)
    params = {**(base_params or {}), "seed": seed, "device": device}
    fit = lambda head, **grid_args: head.fit_grid(X, y, X_val=X_val, y_val=y_val, **grid_args)  # noqa: E731
    if kind == "logistic":
        return _sweep_logistic(grid, params, LogisticHead, fit)
    return _sweep_mlp(grid, params, MLPHead, fit)


def sweep_blocks(kind: str, grid: dict[str, list[Any]], blocks: Any, X_val: Any, y_val: Any, *,
                 seed: int = 0, device: str = "auto", base_params: dict[str, Any] | None = None) -> SweepResult:
    """``sweep`` on train rows streamed from a ``probes.blocks.BlockList`` (over the memory budget)."""
    from probes.streaming import StreamingLogisticHead
    from probes.streaming_mlp import StreamingMLPHead

    check_grid(kind, grid)
    params = {**(base_params or {}), "seed": seed, "device": device}
    fit = lambda head, **grid_args: head.fit_grid_blocks(blocks, X_val=X_val, y_val=y_val, **grid_args)  # noqa: E731
    if kind == "logistic":
        return _sweep_logistic(grid, params, StreamingLogisticHead, fit)
    return _sweep_mlp(grid, params, StreamingMLPHead, fit)


def check_grid(kind: str, grid: dict[str, list[Any]]) -> None:
    """Fail loudly on an unknown head kind, an unknown key, or an empty grid."""
    if kind not in GRID_KEYS:
        raise ValueError(f"unknown head kind {kind!r}; expected one of {', '.join(GRID_KEYS)}")
    allowed = GRID_KEYS[kind]
    unknown = sorted(set(grid) - set(allowed))
    if unknown:
        raise ValueError(f"unknown sweep parameter(s) {unknown} for a {kind} head; "
                         f"allowed: {', '.join(allowed)}")
    if not grid:
        raise ValueError(f"empty sweep: the grid has no parameters (allowed: {', '.join(allowed)})")
    empty = [key for key, values in grid.items() if len(list(values)) == 0]
    if empty:
        raise ValueError(f"empty sweep: {empty} have no values")


def _sweep_logistic(grid: dict[str, list[Any]], params: dict[str, Any], cls: type[LogisticHead],
                    fit: Callable[..., list[dict[str, Any]]]) -> SweepResult:
    fixed = {k: v for k, v in params.items() if k not in GRID_KEYS["logistic"]}
    head = cls(**fixed)
    # An axis missing from the grid takes base_params' value, else scikit-learn's C=1 / shrink=1.
    Cs = list(grid.get("C", [params.get("C") or 1.0]))
    shrinks = list(grid.get("shrink", [params.get("shrink") or 1.0]))
    table = fit(head, Cs=Cs, shrinks=shrinks)
    head.set_params(**head.selected_params())
    return SweepResult(table, head.selected_params(), head)


def _sweep_mlp(grid: dict[str, list[Any]], params: dict[str, Any], cls: type[MLPHead],
               fit: Callable[..., list[dict[str, Any]]]) -> SweepResult:
    head = cls(**{k: v for k, v in params.items() if k not in GRID_KEYS["mlp"]})
    base = {**{k: getattr(MLPHead(), k) for k in GRID_KEYS["mlp"]},
            **{k: v for k, v in params.items() if k in GRID_KEYS["mlp"]}}
    keys = list(grid)
    configs = [{**base, **dict(zip(keys, values))}
               for values in itertools.product(*(grid[k] for k in keys))]
    specs = [solvers.MLPSpec(lr=float(c["lr"]), weight_decay=float(c["weight_decay"]),
                             hidden=as_widths(c["hidden"]), dropout=float(c["dropout"]))
             for c in configs]
    table = fit(head, specs=specs)
    best = max(range(len(table)), key=lambda g: (table[g]["val_top1"], -table[g]["val_loss"]))
    best_params = {k: configs[best][k] for k in keys}
    head.set_params(**{k: configs[best][k] for k in GRID_KEYS["mlp"]})
    head.hidden = as_widths(head.hidden)
    return SweepResult(table, best_params, head)
