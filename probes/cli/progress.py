"""`probes fit`'s progress on stderr: one line per open stage (fitting, fold k of K, epoch e of E,
configuration i of N) with elapsed time and ETA, drawn by rich from ``probes.progress`` stages."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from featstore.cli.boundary import err


class RichFitProgress:
    """A ``probes.progress.Reporter``: inner stages (epochs) appear under outer ones (folds) and
    disappear when done; the bars vanish when the fit ends, leaving its results on stdout."""

    def __init__(self, title: str) -> None:
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            TextColumn("{task.fields[note]}", style="cyan"), console=err, transient=True)
        self.title = title

    def __enter__(self) -> "RichFitProgress":
        self.bar.start()
        self.bar.add_task(self.title, total=None, note="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, name: str, total: int | None) -> Any:
        return self.bar.add_task(f"  {name}", total=total, note="")

    def advance(self, task: Any, n: int, note: str) -> None:
        self.bar.update(task, advance=n, note=note)

    def stop(self, task: Any) -> None:
        self.bar.remove_task(task)
