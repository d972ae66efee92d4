"""Dataset layouts (image folders, Boostcamp CSV) -> stable ids, labels and the class list."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from featstore.dirscan import DirReader, scan_threads
from featstore.errors import LayoutError
from featstore.tars import is_tar_layout, scan_tars

__all__ = ["IMAGE_EXTENSIONS", "SPLITS", "Dataset", "ImageItem", "scan_dataset"]

#: Files taken as images (compared lower-case). Nothing is opened while scanning.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
#: Canonical split names, in the order they are reported.
SPLITS = ("train", "val", "test")
_SPLIT_FOLDERS = {
    "train": "train", "train_images": "train",
    "val": "val", "val_images": "val", "valid": "val", "valid_images": "val",
    "test": "test", "test_images": "test",
}  # fmt: skip
_CSV_BASE = {"train": "train", "val": "train", "test": "test"}  # csv name -> folder its paths are under
_LABELED_COLUMNS = ("class_name", "image_path", "target")
_MAX_LISTED = 5


@dataclass(frozen=True)
class ImageItem:
    """One image: `id` is its path relative to the split root, '/'-separated (stable across machines)."""

    id: str
    file: str  # the file's path as a string: a Path per image costs ~25 µs to build, seconds at 100k+ images
    label: int  # class index, -1 when unlabeled
    problem: str = ""  # why it cannot be read at all (dangling link, name not UTF-8): recorded as a failure
    member: tuple[int, int] | None = None  # (offset, size) inside the tar `file` (webdataset layout)

    @property
    def path(self) -> Path:
        return Path(self.file)


@dataclass(frozen=True)
class Dataset:
    """A scanned dataset. `classes[label]` names a label; items of each split are sorted by id.

    In the folder layout a class folder without images is still a class, so indices do not
    shift when a folder happens to be empty. `test_order` is set by the CSV layout only: the
    test ids in test.csv row order, which the boostcamp submission must follow.
    """

    root: Path
    layout: str  # "folders", "csv" or "webdataset"
    classes: tuple[str, ...]
    splits: dict[str, tuple[ImageItem, ...]]
    test_order: tuple[str, ...] | None = None
    hidden: tuple[str, ...] = ()  # hidden folders that were skipped, `split/relative/path`


def scan_dataset(root: str | os.PathLike, *, splits: Sequence[str] | None = None,
                 threads: int | None = None) -> Dataset:
    """Find the layout of `root` and list its images; `splits` limits which splits are listed.

    `threads` list folders in parallel (a network filesystem answers many at once); None: the
    FEATSTORE_SCAN_THREADS environment variable, else featstore.dirscan.AUTO_THREADS on a network
    filesystem and 1 on a local one. The result is the same whatever the count.

    A train.csv or test.csv in `root` selects the CSV layout (its train/ and test/ folders would
    also look like image folders). The class list does not depend on `splits`: it always comes
    from the train split (or val when there is no train), so features extracted split by split
    share one label space.
    """
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise LayoutError(f"dataset folder {str(root)!r} does not exist or is not a folder")
    if (path / "train.csv").is_file() or (path / "test.csv").is_file():
        dataset = _scan_csv(path, splits)
    elif is_tar_layout(path):
        found = scan_tars(path, splits, _select, lambda i, f, label, m: ImageItem(i, f, label, "", m))
        dataset = Dataset(root=path, layout="webdataset", classes=found["classes"], splits=found["splits"])
    else:
        dataset = _scan_folders(path, splits, scan_threads(threads, root=path))
    if not any(dataset.splits.values()):
        raise LayoutError(
            f"no images found in {path} (splits: {', '.join(dataset.splits)}; "
            f"extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return dataset


def _select(found: Sequence[str], requested: Sequence[str] | None, root: Path) -> tuple[str, ...]:
    """The splits to list, in canonical order; asking for an absent one is an error."""
    if requested is None:
        return tuple(found)
    if isinstance(requested, str):  # splits="test" means ["test"], not ["t", "e", "s", "t"]
        requested = [requested]
    wanted = {_SPLIT_FOLDERS.get(name, name) for name in requested}
    missing = sorted(wanted - set(found))
    if missing:
        raise LayoutError(
            f"split(s) {', '.join(missing)} not found in {root}; found: {', '.join(found) or 'none'}"
        )
    return tuple(s for s in found if s in wanted)


# --- image folders -------------------------------------------------------------------------


def _scan_folders(root: Path, requested: Sequence[str] | None, threads: int) -> Dataset:
    dirs = _split_dirs(root)
    if not dirs:
        raise LayoutError(_no_layout_message(root))
    classes = _folder_classes(dirs)
    splits, hidden = {}, []
    for split in _select(tuple(dirs), requested, root):
        walk = _Walk(dirs[split], threads=threads)
        items = _labeled_items(dirs[split], classes, walk) if split != "test" else _unlabeled_items(dirs[split], walk)
        splits[split] = tuple(sorted(items, key=lambda item: item.id))
        hidden += [f"{dirs[split].name}/{h}" for h in sorted(walk.hidden)]  # folders come back in any order
    return Dataset(root=root, layout="folders", classes=classes, splits=splits, hidden=tuple(hidden))


def _split_dirs(root: Path) -> dict[str, Path]:
    """Split folders of `root` by canonical name; two spellings of one split are ambiguous."""
    names: dict[str, str] = {}
    with os.scandir(root) as entries:
        for entry in entries:
            split = _SPLIT_FOLDERS.get(entry.name)
            if split is None or not entry.is_dir():
                continue
            if split in names:
                both = " and ".join(f"{n}/" for n in sorted((names[split], entry.name)))
                raise LayoutError(f"{root}: both {both} are the {split} split; keep only one")
            names[split] = entry.name
    return {split: root / names[split] for split in SPLITS if split in names}


def _folder_classes(dirs: dict[str, Path]) -> tuple[str, ...]:
    """Sorted class folder names of train (torchvision ImageFolder order), else of val."""
    train = _subfolders(dirs["train"]) if "train" in dirs else None
    val = _subfolders(dirs["val"]) if "val" in dirs else None
    if train is None:
        return tuple(val or ())
    unknown = sorted(set(val or ()) - set(train))
    if unknown:
        raise LayoutError(
            f"{dirs['val'].name}/ has class folder(s) that {dirs['train'].name}/ lacks: "
            f"{_listing(unknown)}"
        )
    return tuple(train)


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def _labeled_items(split_dir: Path, classes: tuple[str, ...], walk: "_Walk") -> list[ImageItem]:
    """Images under <split>/<class>/ (any depth); images loose in <split>/ have no label: error."""
    index = {name: i for i, name in enumerate(classes)}
    with os.scandir(split_dir) as entries:
        entries = [e for e in entries if not walk.skip_hidden(e, "")]
    class_dirs = [e for e in entries if e.is_dir()]
    for entry in class_dirs:  # a link inside one class to another class folder must not relabel its images
        walk.claim(entry)
    loose = [e.name for e in entries if not e.is_dir() and _is_image(e.name)]
    if loose:
        raise LayoutError(
            f"{split_dir} holds {len(loose)} image(s) outside class folders ({_listing(loose)}); "
            "a labeled split needs one folder per class"
        )
    bases = {e.name: os.path.join(split_dir, e.name, "") for e in class_dirs}
    return [ImageItem(f"{cls}/{rel}", bases[cls] + rel, index[cls], problem)
            for cls, rel, problem in walk.files([(e.path, e.name) for e in class_dirs])]


def _unlabeled_items(split_dir: Path, walk: "_Walk") -> list[ImageItem]:
    """Every image under the test folder, flat or inside dummy folders, with label -1."""
    base = os.path.join(split_dir, "")
    return [ImageItem(rel, base + rel, -1, problem) for _, rel, problem in walk.files([(str(split_dir), "")])]


class _Walk:
    """Walks one split: each real folder is entered at most once, whatever links point at it (a loop, or a
    link from one class folder into another, cannot list an image twice or under another label).

    Folders are listed by `threads` threads (featstore.dirscan); the items are sorted afterwards, so the
    result does not depend on the order folders come back in.
    """

    def __init__(self, split_dir: Path, *, threads: int = 1) -> None:
        self.seen: set[tuple[int, int]] = set()
        self.hidden: list[str] = []
        self.threads = threads
        self.claim(split_dir)

    def claim(self, folder: os.DirEntry | Path) -> bool:
        """Mark a folder as walked; False when it already was."""
        st = folder.stat() if isinstance(folder, os.DirEntry) else os.stat(folder)
        if (st.st_dev, st.st_ino) in self.seen:
            return False
        self.seen.add((st.st_dev, st.st_ino))
        return True

    def skip_hidden(self, entry: os.DirEntry, prefix: str) -> bool:
        if not entry.name.startswith("."):
            return False
        if entry.is_dir():
            self.hidden.append(f"{prefix}{entry.name}/")
        return True

    def files(self, tops: list[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
        """(top's name, '/'-separated path under that top, problem) of each image file under each
        (folder, name) of `tops`; problem is "" for a readable name."""
        with DirReader[tuple[str, str]](self.threads) as reader:
            for folder, name in tops:
                reader.submit(folder, (name, ""))
            for (name, prefix), entries in reader.results():
                prefix0 = f"{name}/" if name else ""
                for entry in entries:
                    if self.skip_hidden(entry, prefix0 + prefix):
                        continue
                    if entry.is_dir():
                        if self.claim(entry):
                            reader.submit(entry.path, (name, f"{prefix}{entry.name}/"))
                    elif _is_image(entry.name):
                        problem = _file_problem(entry)
                        if problem is not None:
                            yield name, _printable(prefix + entry.name), problem


def _file_problem(entry: os.DirEntry) -> str | None:
    """"" for a regular file with a valid name, a reason for one that cannot be read, None for a non-file."""
    if entry.is_symlink() and not os.path.exists(entry.path):
        return f"dangling symbolic link (to {os.readlink(entry.path)!r})"
    if not entry.is_file():
        return None
    if _printable(entry.name) != entry.name:
        return "file name is not valid UTF-8 (rename the file)"
    return ""


def _printable(name: str) -> str:
    """A name that is not valid UTF-8 (undecodable bytes kept as surrogates) with those bytes as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _listing(names: Sequence[str]) -> str:
    """At most five names, then how many more: messages stay one line."""
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def _no_layout_message(root: Path) -> str:
    with os.scandir(root) as entries:
        present = sorted(e.name + ("/" if e.is_dir() else "") for e in entries)
    return (
        f"no dataset layout found in {root}: expected train_images/ val_images/ test_images/ "
        "(or train/ val/ valid/ test/) folders, or train.csv + test.csv with train/ and test/ "
        f"folders; found: {_listing(present) or 'nothing'}"
    )


# --- Boostcamp CSV -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    line: int
    id: str
    class_name: str = ""
    target: int = -1


def _scan_csv(root: Path, requested: Sequence[str] | None) -> Dataset:
    """train.csv / val.csv (paths under train/) and test.csv (paths under test/)."""
    found = tuple(s for s in SPLITS if (root / f"{s}.csv").is_file())
    selected = _select(found, requested, root)
    tables = {s: _read_table(root / f"{s}.csv", labeled=s != "test") for s in found}
    _check_unique_ids(tables)
    classes = _csv_classes(tables["train"] if "train" in tables else tables.get("val", []), found)
    if "train" in tables and "val" in tables:
        _check_known_classes(tables["val"], classes)
    splits = {}
    for split in selected:
        base = root / _CSV_BASE[split]
        _check_files(tables[split], base, f"{split}.csv")
        items = (ImageItem(r.id, str(base / r.id), r.target if split != "test" else -1) for r in tables[split])
        splits[split] = tuple(sorted(items, key=lambda item: item.id))
    order = tuple(r.id for r in tables["test"]) if "test" in selected else None
    return Dataset(root=root, layout="csv", classes=classes, splits=splits, test_order=order)


def _read_table(path: Path, *, labeled: bool) -> list[_Row]:
    """Rows of one CSV; extra columns are ignored, blank lines skipped, anything odd is an error."""
    required = _LABELED_COLUMNS if labeled else ("image_path",)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise LayoutError(
                    f"{path.name}: missing column(s) {', '.join(missing)}; "
                    f"header is {','.join(header) or '(empty)'}, expected {','.join(required)}"
                )
            columns = [header.index(c) for c in required]
            return [
                _parse_row(fields, columns, header, f"{path.name} line {reader.line_num}", reader.line_num)
                for fields in reader
                if any(field.strip() for field in fields)
            ]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path.name}: unreadable CSV ({exc})") from exc
    except OSError as exc:
        raise LayoutError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc


def _parse_row(fields: list[str], columns: list[int], header: list[str], where: str, line: int) -> _Row:
    if len(fields) != len(header):
        raise LayoutError(f"{where}: {len(fields)} field(s), the header has {len(header)}")
    values = [fields[i].strip() for i in columns]
    if any(not v for v in values):
        raise LayoutError(f"{where}: empty value in column(s) {', '.join(header[i] for i in columns)}")
    if len(values) == 1:
        return _Row(line, _normalise(values[0], where))
    name, raw_path, raw_target = values
    try:
        target = int(raw_target)
    except ValueError:
        raise LayoutError(f"{where}: target {raw_target!r} is not an integer") from None
    return _Row(line, _normalise(raw_path, where), name, target)


def _normalise(raw: str, where: str) -> str:
    """image_path as a '/'-separated id; it must stay inside its split folder."""
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if PurePosixPath(raw).is_absolute() or PureWindowsPath(raw).drive or ".." in parts or not parts:
        raise LayoutError(f"{where}: image_path {raw!r} must be a relative path inside its folder")
    return "/".join(parts)


def _check_unique_ids(tables: dict[str, list[_Row]]) -> None:
    """One file, one row: test ids among themselves, train and val ids together (same folder)."""
    for group in (("train", "val"), ("test",)):
        first: dict[str, str] = {}
        for split in group:
            for row in tables.get(split, []):
                here = f"{split}.csv line {row.line}"
                if row.id in first:
                    raise LayoutError(f"{here}: image_path {row.id!r} already listed in {first[row.id]}")
                first[row.id] = here


def _csv_classes(rows: list[_Row], found: Sequence[str]) -> tuple[str, ...]:
    """classes[target] = class_name; the mapping must be one-to-one and targets exactly 0..K-1."""
    source = "train.csv" if "train" in found else "val.csv"
    by_name: dict[str, _Row] = {}
    by_target: dict[int, _Row] = {}
    for row in rows:
        seen = by_name.setdefault(row.class_name, row)
        if seen.target != row.target:
            raise LayoutError(
                f"{source} line {row.line}: class {row.class_name!r} has target {row.target}, "
                f"but target {seen.target} on line {seen.line}"
            )
        seen = by_target.setdefault(row.target, row)
        if seen.class_name != row.class_name:
            raise LayoutError(
                f"{source} line {row.line}: target {row.target} is {row.class_name!r}, "
                f"but {seen.class_name!r} on line {seen.line}"
            )
    count = len(by_target)
    outside = sorted(t for t in by_target if not 0 <= t < count)
    if outside:
        raise LayoutError(
            f"{source} line {by_target[outside[0]].line}: targets must be exactly 0..{count - 1} "
            f"for {count} classes; out of range: {_listing([str(t) for t in outside])}"
        )
    return tuple(by_target[t].class_name for t in range(count))


def _check_known_classes(rows: list[_Row], classes: tuple[str, ...]) -> None:
    for row in rows:
        if not (0 <= row.target < len(classes) and classes[row.target] == row.class_name):
            raise LayoutError(
                f"val.csv line {row.line}: class {row.class_name!r} with target {row.target} "
                "does not match train.csv"
            )


def _check_files(rows: list[_Row], base: Path, source: str) -> None:
    if rows and not base.is_dir():
        raise LayoutError(f"{source} lists images under {base}/, which is not a folder")
    missing = [row.id for row in rows if not (base / row.id).is_file()]
    if missing:
        raise LayoutError(
            f"{source}: {len(missing)} listed file(s) missing under {base}/: {_listing(missing)}"
        )
