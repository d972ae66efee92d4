"""probes: train, compare, evaluate and submit classifier heads on cached features."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_run(ref: Any, *, runs: Path | None = None) -> Any:
    """A saved run's fitted head with its normalisation and temperature (``probes.probe.Probe``);
    see ``probes.runs.load_run``. Imported lazily: ``import probes`` stays light."""
    from probes.runs import load_run as _load_run

    return _load_run(ref, runs=runs)
