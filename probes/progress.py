"""Progress of a fit (fold k of K, epoch e of E, configuration i of N) without a progress bar in the library.

The solvers and the fit loop announce stages here; whoever drives the fit (the `probes fit` command line)
installs a ``Reporter`` for the duration with ``reporting``. Without one every call is a no-op, so heads
stay plain scikit-learn estimators (no callback parameter to validate, clone or pickle). A context
variable, not a global: two fits in two threads report to their own reporters.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Protocol


class Reporter(Protocol):
    """What draws progress: one task per open stage, nested stages drawn under their parent."""

    def start(self, name: str, total: int | None) -> Any: ...

    def advance(self, task: Any, n: int, note: str) -> None: ...

    def stop(self, task: Any) -> None: ...


_REPORTER: ContextVar[Reporter | None] = ContextVar("probes_fit_reporter", default=None)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Send the stages of the fits inside the block to ``reporter``."""
    token = _REPORTER.set(reporter)
    try:
        yield reporter
    finally:
        _REPORTER.reset(token)


class Stage:
    """One stage of a fit: ``name`` (e.g. "fold", "epoch") with ``total`` steps, or None when the
    number of steps is not known in advance (an adaptive search). A no-op without a reporter."""

    def __init__(self, name: str, total: int | None = None) -> None:
        self._reporter = _REPORTER.get()
        self._task = self._reporter.start(name, total) if self._reporter is not None else None

    def advance(self, n: int = 1, note: str = "") -> None:
        if self._reporter is not None:
            self._reporter.advance(self._task, n, note)

    def close(self) -> None:
        if self._reporter is not None:
            self._reporter.stop(self._task)
            self._reporter = None

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage(name: str, total: int | None = None) -> Stage:
    """Open a stage (use as a context manager): ``with stage("fold", 5) as s: ... s.advance()``."""
    return Stage(name, total)
