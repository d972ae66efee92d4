"""What a run keeps about its test split to write a submission without its feature set: layout, CSV order and strings."""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GENERATED_ID = re.compile(r"^test/\d{7}$")  # featstore import names rows test/0000000 when the file has no ids


@dataclass(frozen=True)
class TestSplit:
    """``layout``: folders, csv or imported. ``order``: test.csv's row order as store ids (csv layout);
    ``paths``: test.csv's image_path strings exactly as written (``./t3.png``), same order.
    ``generated_ids``: the ids were made up at import (row numbers), so they name no file."""

    __test__ = False  # not a pytest class

    layout: str
    order: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    generated_ids: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TestSplit":
        return cls(layout=d.get("layout", "folders"), order=tuple(d["order"]) if d.get("order") else None,
                   paths=tuple(d["paths"]) if d.get("paths") else None, generated_ids=bool(d.get("generated_ids")))

    @property
    def default_format(self) -> str:
        return "boostcamp" if self.layout == "csv" else "mva"

    def csv_paths(self) -> list[str]:
        """test.csv's image_path strings in its order (the store's normalised ids when the CSV is gone)."""
        return list(self.paths or self.order or ())


def split_record(dataset: dict[str, Any], test_ids: Any) -> TestSplit:
    """From a feature set's ``dataset`` header and its test ids (read once, at fit time)."""
    layout = dataset.get("layout", "folders")
    order = tuple(dataset["test_order"]) if dataset.get("test_order") else None
    generated = layout == "imported" and len(test_ids) > 0 and all(GENERATED_ID.match(str(i)) for i in test_ids)
    paths = _raw_paths(Path(dataset["root"]) / "test.csv", order) if order and dataset.get("root") else None
    return TestSplit(layout=layout, order=order, paths=paths, generated_ids=generated)


def _raw_paths(path: Path, order: tuple[str, ...]) -> tuple[str, ...] | None:
    """test.csv's image_path column verbatim; None when the file changed since extraction (no longer lines up)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            col = header.index("image_path")
            raw = [row[col].strip() for row in reader if any(v.strip() for v in row)]
    except (OSError, ValueError, IndexError, csv.Error, UnicodeDecodeError):
        return None
    same = len(raw) == len(order) and all(_normalised(r) == o for r, o in zip(raw, order))
    return tuple(raw) if same else None


def _normalised(raw: str) -> str:
    return "/".join(p for p in raw.replace("\\", "/").split("/") if p not in ("", "."))
