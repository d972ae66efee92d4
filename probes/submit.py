"""probes submit: the competition CSV, validated before it is written (a malformed CSV scored <10% for a seed)."""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

import numpy as np

from probes.data import ProbesError
from probes.runs import Predictions

HEADERS = {"mva": ["Id", "Category"], "boostcamp": ["ID", "image_path", "target"]}


def submission_rows(preds: Predictions, *, n_classes: int, fmt: str = "mva",
                    test_order: list[str] | None = None) -> list[list[str]]:
    """Rows (without header) in the format's natural order; ids come from the store, never re-parsed paths."""
    if fmt not in HEADERS:
        raise ProbesError(f"unknown submission format {fmt!r}; expected one of {', '.join(HEADERS)}")
    if not np.isfinite(preds.probs).all():
        raise ProbesError("test probabilities contain NaN/Inf; refit the run")
    cats = preds.probs.argmax(1)
    if fmt == "mva":
        return [[PurePosixPath(i).stem, str(int(c))] for i, c in zip(preds.ids, cats)]
    if not test_order:
        raise ProbesError("--format boostcamp needs the test.csv order: extract the CSV layout (test.csv) with featstore")
    by_id = dict(zip(preds.ids, cats))
    missing = [i for i in test_order if i not in by_id]
    if missing:
        raise ProbesError(f"{len(missing)} test.csv images have no prediction (e.g. {missing[0]})")
    return [[str(row), i, str(int(by_id[i]))] for row, i in enumerate(test_order)]


def validate(rows: list[list[str]], *, fmt: str, n_classes: int, n_test: int) -> None:
    """Row count = test images, unique ids, categories in range."""
    if len(rows) != n_test:
        raise ProbesError(f"submission has {len(rows)} rows but the test split has {n_test} images")
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ProbesError(f"duplicate submission id {dup!r} (two test files with the same stem?)")
    bad = [r for r in rows if not 0 <= int(r[-1]) < n_classes]
    if bad:
        raise ProbesError(f"category {bad[0][-1]} out of range 0..{n_classes - 1}")


def order_like_sample(rows: list[list[str]], sample: Path, *, fmt: str) -> list[list[str]]:
    """Reorder rows to the sample CSV's id order; its header and id set must match exactly."""
    with open(sample, newline="", encoding="utf-8-sig") as f:  # Excel saves CSVs with a byte-order mark
        reader = csv.reader(f)
        header = next(reader, None)
        sample_ids = [r[0] for r in reader if r]
    if header != HEADERS[fmt]:
        raise ProbesError(f"sample {sample} has header {header}, the {fmt} format writes {HEADERS[fmt]}")
    by_id = {r[0]: r for r in rows}
    missing, extra = set(sample_ids) - set(by_id), set(by_id) - set(sample_ids)
    if missing or extra or len(sample_ids) != len(rows):
        eg = sorted(missing)[:1] + sorted(extra)[:1]
        raise ProbesError(f"sample {sample} lists {len(sample_ids)} ids, the run predicts {len(rows)} "
                          f"({len(missing)} missing, {len(extra)} extra; e.g. {', '.join(eg)})")
    return [by_id[i] for i in sample_ids]


def write_submission(preds: Predictions, out: Path, *, n_classes: int, n_test: int, fmt: str = "mva",
                     test_order: list[str] | None = None, sample: Path | None = None) -> Path:
    rows = submission_rows(preds, n_classes=n_classes, fmt=fmt, test_order=test_order)
    if sample is not None:
        rows = order_like_sample(rows, Path(sample), fmt=fmt)
    validate(rows, fmt=fmt, n_classes=n_classes, n_test=n_test)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(HEADERS[fmt])
            w.writerows(rows)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half submission
    return out


def read_submission(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]
