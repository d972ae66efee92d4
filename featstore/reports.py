"""What extraction and merge report: per split counts, failures, notes; and the progress protocol the CLI draws."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from featstore.distributed import Rank


class Progress(Protocol):
    """What extraction reports while it works; the CLI draws it with rich."""

    def start(self, split: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def end(self) -> None: ...


class Silent:
    def start(self, split: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def end(self) -> None: ...



@dataclass
class SplitReport:
    split: str
    images: int = 0
    extracted: int = 0
    reused: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MergeSplit:
    split: str
    images: int = 0
    stored: int = 0
    failed: int = 0
    missing: int = 0
    hashed: int = 0  # stored by a worker that died before recording it: verified by re-hashing the file


@dataclass
class MergeReport:
    """What a merge found: per split, images in the index, failed, and missing (no vector, no failure)."""

    encoder: str
    key: str
    folder: Path
    splits: list[MergeSplit] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)  # {"split", "id"}
    running: list[str] = field(default_factory=list)  # worker locks still held: those workers are not done
    precision: str = ""


@dataclass
class ExtractReport:
    encoder: str
    key: str
    folder: Path
    splits: list[SplitReport] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    store_bytes: int = 0
    rank: Rank = Rank()
    precision: str = ""
    merge: MergeReport | None = None  # torchrun rank 0: the merge after every rank finished
    sets: list[tuple[str, str, str]] = field(default_factory=list)  # (output, view, key) of every set filled
    repairs: list[str] = field(default_factory=list)  # damage found on opening the set, and what was done
    hidden: tuple[str, ...] = ()  # hidden folders of the dataset that were skipped
    notes: list[str] = field(default_factory=list)  # said once per run: batch size backed off, images recomputed
    batch_size: int = 0  # the batch size that fitted (smaller than asked after an out-of-memory back-off)
    written: dict[str, list[str]] = field(default_factory=dict)  # set key -> shard and part files this worker wrote
