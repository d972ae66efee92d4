"""The built-in heads' default ``--sweep`` grids, importable without torch (the CLI's --help reads them)."""

from __future__ import annotations

DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "logistic": {"C": [1e-3, 1e-2, 1e-1, 1.0, 10.0], "shrink": [0.1, 1.0, 10.0, 1e3]},
    "mlp": {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "weight_decay": [1e-4, 1e-2], "hidden": [512, 1024]},
}
