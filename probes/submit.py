"""probes submit: the competition CSV, validated before it is written (a malformed CSV scored <10% for a seed)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from probes.data import ProbesError
from probes.runs import Predictions
from probes.sample import infer_labels, match_sample, read_sample
from probes.testsplit import TestSplit

HEADERS = {"mva": ["Id", "Category"], "boostcamp": ["ID", "image_path", "target"]}
LABELS = ("names", "index")


@dataclass(frozen=True)
class Table:
    """A submission before it is written; ``notes`` are hints for the user (how the sample was read)."""

    header: list[str]
    rows: list[list[str]]
    id_col: int
    label_col: int
    what: str
    notes: list[str] = field(default_factory=list)


def _categories(preds: Predictions, classes: list[str], labels: str) -> list[str]:
    if labels not in LABELS:
        raise ProbesError(f"unknown --labels {labels!r}; expected one of {', '.join(LABELS)}")
    if not np.isfinite(preds.probs).all():
        raise ProbesError("test probabilities contain NaN/Inf; refit the run")
    cats = preds.probs.argmax(1)
    return [classes[int(c)] for c in cats] if labels == "names" else [str(int(c)) for c in cats]


def format_table(preds: Predictions, *, classes: list[str], fmt: str, test: TestSplit, labels: str = "index") -> Table:
    """Rows in the format's natural order; ids come from the store, never re-parsed paths."""
    if fmt not in HEADERS:
        raise ProbesError(f"unknown submission format {fmt!r}; expected one of {', '.join(HEADERS)}")
    if test.generated_ids:
        raise ProbesError("the test split was imported without ids (rows are named test/0000000...), so they "
                          "name no file: pass the competition's --sample (its rows are taken in the import's order), "
                          "or import again with an 'ids' array")
    cats = _categories(preds, classes, labels)
    if fmt == "mva":
        rows = [[PurePosixPath(i).stem, c] for i, c in zip(preds.ids, cats)]
        return Table(HEADERS[fmt], rows, 0, 1, "mva (Id = test file stem)")
    if not test.order:
        raise ProbesError("--format boostcamp needs the test.csv order: extract the CSV layout (test.csv) with featstore")
    by_id = dict(zip(preds.ids, cats))
    missing = [i for i in test.order if i not in by_id]
    if missing:
        raise ProbesError(f"{len(missing)} test.csv images have no prediction (e.g. {missing[0]})")
    rows = [[str(row), raw, by_id[i]] for row, (i, raw) in enumerate(zip(test.order, test.csv_paths()))]
    return Table(HEADERS[fmt], rows, 1, 2, "boostcamp (test.csv order and image_path strings)")


def sample_table(preds: Predictions, sample: Path, *, classes: list[str], test: TestSplit,
                 labels: str | None = None) -> Table:
    """The sample's header, id strings, extra columns and row order; only its label column is filled in."""
    s = read_sample(Path(sample))
    ids = [str(i) for i in preds.ids]
    if test.generated_ids:
        if len(s.rows) != len(ids):
            raise ProbesError(f"sample {sample} has {len(s.rows)} rows, the run predicts {len(ids)} test rows "
                              "(imported without ids: rows are matched by position)")
        id_col = 0
        label_col = max(k for k in range(len(s.header)) if k != id_col)
        images = list(range(len(ids)))
        notes = ["the test split was imported without ids: sample row k gets test row k"]
    else:
        m = match_sample(s, ids, where=str(sample))
        id_col, label_col, images, notes = m.id_col, m.label_col, m.images, m.notes
        notes = [f"ids from column {s.header[id_col]!r} ({m.style}), labels into {s.header[label_col]!r}", *notes]
    labels = labels or infer_labels(s.column(label_col), classes)
    cats = _categories(preds, classes, labels)
    rows = []
    for r, i in zip(s.rows, images):
        r = list(r)
        r[label_col] = cats[i]
        rows.append(r)
    return Table(s.header, rows, id_col, label_col, f"like {Path(sample).name} (labels as {labels})", notes)


def validate(table: Table, *, classes: list[str], n_test: int) -> None:
    """Row count = test images, unique ids, categories in range (or known class names)."""
    rows = table.rows
    if len(rows) != n_test:
        raise ProbesError(f"submission has {len(rows)} rows but the test split has {n_test} images")
    ids = [r[table.id_col] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ProbesError(f"duplicate submission id {dup!r} (two test files with the same stem?)")
    known = {str(k) for k in range(len(classes))} | set(classes)
    bad = [r for r in rows if r[table.label_col] not in known]
    if bad:
        raise ProbesError(f"category {bad[0][table.label_col]!r} is neither 0..{len(classes) - 1} nor a class name")


def write_table(table: Table, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(table.header)
            w.writerows(table.rows)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half submission
    return out


def build_table(preds: Predictions, *, classes: list[str], test: TestSplit, fmt: str | None = None,
                sample: Path | None = None, labels: str | None = None) -> Table:
    """With a sample its layout wins; without one ``fmt`` (default: the set's layout's) and ``labels`` (index)."""
    if sample is not None:
        table = sample_table(preds, Path(sample), classes=classes, test=test, labels=labels)
    else:
        table = format_table(preds, classes=classes, fmt=fmt or test.default_format, test=test, labels=labels or "index")
    validate(table, classes=classes, n_test=len(preds.ids))
    return table


def write_submission(preds: Predictions, out: Path, *, classes: list[str], test: TestSplit, fmt: str | None = None,
                     sample: Path | None = None, labels: str | None = None) -> Path:
    return write_table(build_table(preds, classes=classes, test=test, fmt=fmt, sample=sample, labels=labels), out)


def read_submission(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]
