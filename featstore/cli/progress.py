"""Progress bars on stderr: images/s and ETA for long work (extraction, text embedding)."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from featstore.cli.boundary import err


class RateColumn(ProgressColumn):
    """images/s over the whole task (rich's speed column is for bytes)."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} img/s" if speed else "- img/s", style="cyan")


class RichProgress:
    """extract's Progress protocol drawn with rich, one bar per split, on stderr.

    `label` (e.g. "rank 0/4") tags each bar of a worker that does only a slice of the split.
    """

    def __init__(self, label: str = "") -> None:
        self.bar = Progress(TextColumn("[bold]{task.description:>6}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
        self.task: Any = None
        self.label = label

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, split: str, total: int) -> None:
        self.task = self.bar.add_task(f"{split} ({self.label})" if self.label else split, total=total)

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def end(self) -> None:
        self.bar.refresh()
