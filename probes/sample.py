"""A competition's sample CSV read as a template: which column holds the test images, in which id style, where the label goes."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from probes.data import ProbesError

# strongest first: a boostcamp sample's image_path column (path) wins over its ID column (integer row numbers)
STYLES = ("path", "name", "stem", "integer")
LABEL_NAMES = ("category", "label", "labels", "target", "class", "class_id", "prediction", "predicted", "y")


@dataclass(frozen=True)
class Sample:
    header: list[str]
    rows: list[list[str]]

    def column(self, k: int) -> list[str]:
        return [r[k] for r in self.rows]


@dataclass(frozen=True)
class SampleMatch:
    """``images[i]``: the test image (index into the run's test ids) that sample row i names."""

    id_col: int
    label_col: int
    style: str
    images: list[int]
    notes: list[str] = field(default_factory=list)


def read_sample(path: Path) -> Sample:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # Excel saves CSVs with a byte-order mark
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [r for r in reader if any(v.strip() for v in r)]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise ProbesError(f"cannot read sample {path}: {e}") from None
    if len(header) < 2:
        raise ProbesError(f"sample {path} has header {header}: expected an id column and a label column")
    bad = next((n for n, r in enumerate(rows, 2) if len(r) != len(header)), None)
    if bad is not None:
        raise ProbesError(f"sample {path} line {bad}: {len(rows[bad - 2])} fields, the header has {len(header)}")
    return Sample(header, rows)


def _key(value: str, style: str) -> str | None:
    """One id in one style; the same function serves the sample's values and the run's ids."""
    value = value.strip()
    path = "/".join(p for p in value.replace("\\", "/").split("/") if p not in ("", "."))
    if style == "path":
        return path
    if style == "name":
        return PurePosixPath(path).name
    stem = PurePosixPath(path).stem
    if style == "stem":
        return stem
    return str(int(stem)) if stem.isdigit() else None  # integer: "007" and "7" are one id


def _match(values: list[str], ids: list[str], style: str) -> tuple[list[int | None], bool]:
    """Per sample value the test image it names (None: none), and whether that is a one-to-one cover of the ids.
    In the stem style a sample value's own extension is dropped too: one that differs is a hint, not a refusal."""
    keyed: dict[str, int] = {}
    for i, t in enumerate(ids):
        k = _key(t, style)
        if k is None or k in keyed:
            return [None] * len(values), False  # the style does not tell the test images apart
        keyed[k] = i
    got = [keyed.get(_key(v, style) or "") for v in values]
    ok = len(values) == len(ids) and None not in got and len(set(got)) == len(ids)
    return got, ok


def match_sample(sample: Sample, ids: list[str], *, where: str) -> SampleMatch:
    """Find the id column and style; refuse, naming the difference, when no column lists exactly the test images."""
    cols = range(len(sample.header))
    for style in STYLES:
        for c in cols:
            got, ok = _match(sample.column(c), ids, style)
            if ok:
                notes = _notes(sample.column(c)[0], ids[int(got[0])], style)
                return SampleMatch(c, _label_column(sample.header, c), style, [int(g) for g in got], notes)
    raise ProbesError(_mismatch(sample, ids, where=where))


def _notes(value: str, image: str, style: str) -> list[str]:
    v, t = PurePosixPath(value.strip()), PurePosixPath(image)
    if style == "stem" and v.suffix and v.suffix != t.suffix:
        return [f"the sample's ids end in {v.suffix}, the test images in {t.suffix or 'no extension'} "
                f"({value!r} for {image!r}); matched by stem, the sample's strings are kept"]
    if style in ("name", "path") and v.suffix:
        return [f"the sample's ids keep the extension ({value!r}), a plain submission writes stems; "
                "written as in the sample"]
    return []


def _label_column(header: list[str], id_col: int) -> int:
    named = [k for k, h in enumerate(header) if k != id_col and h.strip().lower() in LABEL_NAMES]
    return named[0] if named else max(k for k in range(len(header)) if k != id_col)


def _mismatch(sample: Sample, ids: list[str], *, where: str) -> str:
    """The closest column and style, with one sample id that is no test image and one test image not in the sample."""
    best = max(((len({g for g in _match(sample.column(c), ids, s)[0] if g is not None}), c, s)
                for c in range(len(sample.header)) for s in STYLES), key=lambda t: t[0])
    hits, c, style = best
    values = sample.column(c)
    got = _match(values, ids, style)[0]
    stray = next((v for v, g in zip(values, got) if g is None), None)
    seen = {g for g in got if g is not None}
    unseen = next((t for i, t in enumerate(ids) if i not in seen), None)
    msg = (f"sample {where} does not list the run's {len(ids)} test images: it has {len(values)} rows; closest is "
           f"column {sample.header[c]!r}, whose ids name {hits} test images by {style}")
    if stray is not None:
        msg += f"; sample id {stray!r} is no test image"
    if unseen is not None:
        msg += f"; test image {unseen!r} is not in the sample"
    return msg


def infer_labels(values: list[str], classes: list[str]) -> str:
    """names when the sample's label column holds class names that are not all integers, else index."""
    known = set(classes)
    if values and all(v in known for v in values) and not all(v.lstrip("-").isdigit() for v in values):
        return "names"
    return "index"
