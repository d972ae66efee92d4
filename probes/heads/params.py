"""Declared head parameters: one table per head gives validation, `probes heads` and --help."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One constructor parameter: its kind, valid range and a short meaning.

    ``kind``: "float", "int", "bool", "str", "floats" (a non-empty list of floats) or "widths"
    (an int or a tuple of ints). ``low``/``high`` bound numbers (and every element of a list);
    ``open_low``/``open_high`` exclude the bound; ``choices`` lists the strings allowed;
    ``optional``: None is allowed too (it means "choose automatically").
    """

    kind: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False

    def describe(self) -> str:
        """The valid values in words, e.g. ``float in (0, inf) or None``."""
        if self.kind == "str":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "True or False"
        else:
            noun = {"float": "float", "int": "int", "floats": "list of floats",
                    "widths": "int or tuple of ints"}[self.kind]
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            brackets = ("(" if self.open_low or self.low is None else "[") + f"{lo}, {hi}" + \
                (")" if self.open_high or self.high is None else "]")
            text = f"{noun} in {brackets}"
        return text + (" or None" if self.optional else "")

    def check(self, name: str, value: Any) -> None:
        """Raise a one-line ValueError naming ``name`` and the valid range unless ``value`` is valid."""
        if not self._valid(value):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")

    def _valid(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and value in self.choices
        if self.kind == "floats":
            return isinstance(value, (list, tuple)) and len(value) > 0 and all(self._number(v, float) for v in value)
        if self.kind == "widths":
            items = [value] if isinstance(value, int) else value
            return isinstance(items, (list, tuple)) and all(self._number(v, int) for v in items)
        return self._number(value, int if self.kind == "int" else float)

    def _number(self, v: Any, kind: type) -> bool:
        ok_type = isinstance(v, int) if kind is int else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type:
            return False
        v = float(v)
        if not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (self.open_low and v == self.low)):
            return False
        return self.high is None or (v < self.high or (not self.open_high and v == self.high))


def check_params(owner: Any, table: dict[str, Param]) -> None:
    """Validate every declared parameter of ``owner`` (before a fit touches any state)."""
    for name, param in table.items():
        param.check(name, getattr(owner, name))
