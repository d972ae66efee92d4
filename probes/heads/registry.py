"""The head registry: ``@register_head("name")`` on an estimator class; ``probes fit --head NAME`` looks it up.

The head interface (what ``fit_run``, sweeps, calibration and ``load_run`` rely on):

* a scikit-learn classifier: ``__init__`` stores keyword parameters only; ``fit(X, y)`` returns
  self and sets ``classes_`` (sorted labels) and ``n_features_in_``; ``predict_proba(X)`` returns
  [n, len(classes_)] probabilities in ``classes_`` order. That is all a head needs: it is fit in
  memory on the (normalised) train arrays, calibrated on val and saved with the run.
* optional, used when present:
  - ``fit(X, y, *, X_val=None, y_val=None)`` (or ``val=(X_val, y_val)``): the head selects /
    stops early on the val split (detected from the signature);
  - ``fit(X, y, *, text=None)`` and ``needs_text = True``: class-name text embeddings
    (``probes fit --text SET``: a ``featstore.store.textset.TextSet`` or arrays), checked
    against the feature set's classes before the fit;
  - ``streams=True`` at registration: ``fit(source)`` accepts a ``probes.sources.TrainSource``
    as X (y None), so a train split over the memory budget is streamed from the store instead
    of loaded; a head without it is always fit in memory;
  - ``predict_log_proba(X)``: exact log-probabilities, used for temperature calibration
    instead of ``log(predict_proba)``;
  - ``fit_grid(X, y, *, X_val, y_val, grid) -> list[dict]``: a batched sweep (one row per
    configuration, ``val_top1`` and ``val_loss`` in each), the head left fitted at the best;
    without it ``--sweep`` fits each configuration of the grid with ``sklearn.base.clone``;
  - ``refit_params()``: the parameters to refit on train+val without a val split (``--final``);
  - ``PARAMS`` (``probes.heads.params.Param`` per parameter) and ``check_params()``: validation
    before fitting and the listing of ``probes heads``;
  - ``state_dict()`` / ``from_state_dict(state, params)``: tensors for ``head.safetensors``;
    without them a run is saved with its probabilities but ``load_run`` cannot rebuild it.

``grid`` at registration is the head's default ``--sweep`` grid (shown in ``--help``).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

# Modules whose import registers the built-in heads (a new head module adds one line here).
HEAD_MODULES = ("probes.heads.logistic", "probes.heads.mlp", "probes.heads.fewshot")


@dataclass(frozen=True)
class HeadEntry:
    """A registered head: its class, whether it streams, its default sweep grid."""

    name: str
    cls: type
    streams: bool = False
    grid: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.cls) or "").split("\n")[0]

    @property
    def uses_val(self) -> bool:
        """Whether ``fit`` takes the val split (``X_val``/``y_val`` or ``val``: selection or early stopping)."""
        params = inspect.signature(self.cls.fit).parameters
        return "X_val" in params or "val" in params


_REGISTRY: dict[str, HeadEntry] = {}


def register_head(name: str, *, streams: bool = False, grid: dict[str, list[Any]] | None = None):
    """Class decorator: register ``cls`` under ``name`` (one name, one head; re-registering fails)."""
    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"head {name!r} is already registered ({_REGISTRY[name].cls.__name__})")
        _REGISTRY[name] = HeadEntry(name, cls, streams, dict(grid or {}))
        return cls
    return decorate


def _load() -> None:
    for module in HEAD_MODULES:
        importlib.import_module(module)


def head_names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_head(name: str) -> HeadEntry:
    """The entry for ``name``, or a ValueError listing the known heads."""
    _load()
    if name not in _REGISTRY:
        raise ValueError(f"unknown head {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_head(name: str, **params: Any) -> Any:
    """An unfitted head with ``params``: unknown names list the valid ones, values are checked."""
    entry = get_head(name)
    valid = sorted(entry.cls().get_params())
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for the {name} head; valid: {', '.join(valid)}")
    head = entry.cls(**params)
    if hasattr(head, "check_params"):
        head.check_params()
    return head


def head_parameters(name: str) -> list[dict[str, Any]]:
    """Each parameter of ``name``: default, valid values and meaning (``probes heads``)."""
    entry = get_head(name)
    table = getattr(entry.cls, "PARAMS", {})
    rows = []
    for pname, default in entry.cls().get_params().items():
        spec = table.get(pname)
        rows.append({"name": pname, "default": default, "valid": spec.describe() if spec else "",
                     "help": spec.help if spec else "", "grid": entry.grid.get(pname)})
    return rows
