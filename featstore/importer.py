"""featstore import: arrays extracted elsewhere (.npz / .npy / .pt) become a feature set like any other."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from featstore.encoders.weights import file_identity
from featstore.errors import StoreError
from featstore.store import FeatureSetWriter, SplitIndex, default_cache, encoder_dirname, feature_key, now_iso

SPLIT_ORDER = ("train", "val", "test")
# what notebooks call them, first match wins; `torch.save((X, y))` / `(X, y, ids)` tuples are taken in that order
ALIASES = {"features": ("features", "feats", "embeddings", "embeds", "x", "X"),
           "labels": ("labels", "label", "targets", "target", "y"),
           "ids": ("ids", "id", "paths", "image_paths", "filenames", "files")}
TUPLE_ORDER = ("features", "labels", "ids")


def load_arrays(path: Path, *, split: str) -> dict[str, np.ndarray]:
    """{features, labels, ids} from one file; pickled code is refused (.npz/.npy without pickle, .pt weights-only)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{split}: no such file {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        elif suffix == ".npy":
            raw = {"features": np.load(path, allow_pickle=False)}
        elif suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, (tuple, list)) and 1 <= len(obj) <= 3:
                obj = dict(zip(TUPLE_ORDER, obj))  # torch.save((X, y)): the notebook idiom
            if not isinstance(obj, dict):
                raise StoreError(f"{path}: expected a dict with 'features' (and 'labels', 'ids') or a (features, labels"
                                 f"[, ids]) tuple, got {type(obj).__name__}")
            raw = {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in obj.items()}
        else:
            raise StoreError(f"{path}: expected .npz, .npy or .pt")
    except StoreError:
        raise
    except Exception as e:  # numpy/torch raise many types for damaged or pickled files
        raise StoreError(f"cannot read {path}: {str(e).splitlines()[0][:200]}") from e
    return _check(raw, path=path, split=split)


def _alias(raw: dict[str, Any], what: str) -> str | None:
    return next((k for k in ALIASES[what] if k in raw), None)


def describe(raw: dict[str, Any]) -> str:
    """Which of the file's arrays became features, labels and ids (the import says so: a wrong guess is visible)."""
    parts = []
    for what in TUPLE_ORDER:
        k = _alias(raw, what)
        parts.append(f"{what} from {k!r}" if k else f"no {what}")
    return ", ".join(parts)


def _check(raw: dict[str, Any], *, path: Path, split: str) -> dict[str, np.ndarray]:
    key = _alias(raw, "features")
    if key is None:
        raise StoreError(f"{path}: no features array (looked for {', '.join(ALIASES['features'])}; "
                         f"found: {', '.join(raw) or 'nothing'})")
    feats = raw[key]
    feats = np.asarray(feats)
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating):
        raise StoreError(f"{path}: features must be a 2-D float array, got {feats.dtype} {feats.shape}")
    if not np.isfinite(feats).all():
        raise StoreError(f"{path}: features contain NaN or Inf")
    if feats.size and np.abs(feats).max() > 65504:
        raise StoreError(f"{path}: values beyond float16 range (the store keeps float16); rescale them first")
    n = len(feats)
    if n == 0:
        raise StoreError(f"{path}: the {split} split holds no rows")
    label_key, id_key = _alias(raw, "labels"), _alias(raw, "ids")
    labels = _labels(raw[label_key] if label_key else np.full(n, -1), path=path)
    ids = raw[id_key] if id_key else None
    ids = np.array([f"{split}/{k:07d}" for k in range(n)], dtype=object) if ids is None else np.asarray(ids).astype(str).astype(object)
    if len(labels) != n or len(ids) != n:
        raise StoreError(f"{path}: {n} features but {len(labels)} labels and {len(ids)} ids")
    if len(set(ids)) != n:
        raise StoreError(f"{path}: duplicate ids")
    if split != "test" and (labels == -1).all():
        raise StoreError(f"{path}: the {split} split needs labels (an .npz/.pt with 'labels'; .npy holds features only)")
    if (labels < (0 if split != "test" else -1)).any():
        raise StoreError(f"{path}: negative label {int(labels.min())} (labels are class indices 0..K-1"
                         + (", or -1 for an unlabeled test image)" if split == "test" else ")"))
    return {"features": feats, "labels": labels, "ids": ids, "used": describe(raw),
            **({"classes": raw["classes"]} if "classes" in raw else {})}


def _labels(raw: Any, *, path: Path) -> np.ndarray:
    """Integer class indices; float labels are refused unless every one is a whole number (1.0 from a tensor)."""
    labels = np.asarray(raw).reshape(-1)
    if np.issubdtype(labels.dtype, np.floating):
        frac = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if len(frac):
            raise StoreError(f"{path}: float labels (e.g. {frac[0]}); labels must be integer class indices")
    elif not np.issubdtype(labels.dtype, np.integer) and not np.issubdtype(labels.dtype, np.bool_):
        raise StoreError(f"{path}: labels of type {labels.dtype}; labels must be integer class indices")
    return labels.astype(np.int64)


def _check_splits(arrays: dict[str, dict[str, np.ndarray]], classes: list[str] | None) -> None:
    """What no single file can show: one image in two splits, class names twice, a label that invents classes.

    Ids are relative to their split (train `cat/1.png` and val `cat/1.png` are two files), so a shared id is
    refused only when it also carries the same vector: then it is one image in two splits."""
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            same = _same_rows(arrays[a], arrays[b])
            if same:
                raise StoreError(f"{len(same)} images are in both {a} and {b} with the same id and vector "
                                 f"(e.g. {same[0]}); an image belongs to one split")
    if classes is not None:
        dup = sorted({c for c in classes if classes.count(c) > 1})
        if dup:
            raise StoreError(f"class names given twice: {', '.join(dup[:5])}")
        return
    labels = np.concatenate([a["labels"] for a in arrays.values()])
    distinct, top = len(set(labels[labels >= 0].tolist())), int(labels.max(initial=-1))
    if top + 1 > 2 * distinct + 10:  # one stray 1,000,000 would make a million classes
        raise StoreError(f"label {top} would make {top + 1:,} classes from {distinct} distinct labels; relabel to "
                         "0..K-1 or pass the class names (--classes, or 'classes' in the train file)")


def _same_rows(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    where_b = {i: k for k, i in enumerate(b["ids"])}
    return sorted(i for k, i in enumerate(a["ids"]) if i in where_b
                  and np.array_equal(a["features"][k], b["features"][where_b[i]]))


def import_arrays(name: str, files: dict[str, Path], *, cache: Path | None = None,
                  classes: list[str] | None = None, note: Callable[[str], None] | None = None) -> Path:
    """Write the given splits as feature set `name`; returns its folder. Class names default to the label values.
    ``note`` hears, per split, which arrays were used.

    Ids: each split's rows keep the file's ids (an 'ids' array, strings), which must be the extracted sets' ids
    (the image path relative to the split folder, '/'-separated, e.g. ``cat/001.jpg``; for a CSV layout the
    normalised ``image_path``) to concatenate with them; without ids rows are named ``split/0000000`` by position."""
    arrays = {s: load_arrays(p, split=s) for s, p in files.items() if p is not None}
    for s, a in arrays.items():
        if note is not None:
            note(f"{s}: {a.pop('used')} ({len(a['features']):,} x {a['features'].shape[1]})")
        a.pop("used", None)
    if "train" not in arrays:
        raise StoreError("import needs at least --train")
    dims = {s: a["features"].shape[1] for s, a in arrays.items()}
    if len(set(dims.values())) != 1:
        raise StoreError(f"feature dimensions differ between splits: {dims}")
    _check_splits(arrays, classes or _given_classes(arrays))
    classes = classes or _classes(arrays)
    top = max(int(a["labels"].max(initial=-1)) for a in arrays.values())
    if top >= len(classes):
        raise StoreError(f"label {top} is out of range for {len(classes)} classes")
    fields = {"imported": name, "sources": {s: file_identity(Path(p)) for s, p in files.items() if p is not None}}
    key = feature_key(fields)
    folder = Path(cache or default_cache()) / encoder_dirname(name) / key
    header = {"encoder": name, "dim": next(iter(dims.values())), "views": 1, "dtype": "float16", "classes": classes,
              "random_weights": False, "weights_source": "imported arrays",
              "dataset": {"root": "", "name": name, "layout": "imported", "test_order": None}}
    with FeatureSetWriter(folder, key=key, key_fields=fields, header=header) as writer:
        for split in SPLIT_ORDER:
            if split in arrays:
                _write_split(writer, split, arrays[split])
        writer.record_run({"started": now_iso(), "finished": now_iso(), "device": "import"})
    return folder


def _write_split(writer: FeatureSetWriter, split: str, a: dict[str, np.ndarray]) -> None:
    order = np.argsort(a["ids"].astype(str), kind="stable")  # the store keeps ids sorted
    ids, labels, feats = a["ids"][order], a["labels"][order], a["features"][order]
    sha1 = np.array([hashlib.sha1(row.tobytes()).hexdigest() for row in feats], dtype=object)  # content = the vector
    for lo in range(0, len(ids), writer.shard_rows):
        hi = lo + writer.shard_rows
        writer.add(split, list(ids[lo:hi]), list(labels[lo:hi]), list(sha1[lo:hi]), feats[lo:hi].astype(np.float16))
    zeros = np.zeros(len(ids), dtype=np.int64)
    writer.commit_split(split, SplitIndex(ids=ids, sha1=sha1, labels=labels, size=zeros, mtime_ns=zeros), [])


def _given_classes(arrays: dict[str, dict[str, np.ndarray]]) -> list[str] | None:
    return next(([str(c) for c in a["classes"]] for a in arrays.values() if "classes" in a), None)


def _classes(arrays: dict[str, dict[str, np.ndarray]]) -> list[str]:
    given = _given_classes(arrays)
    if given is not None:
        return given
    k = max(int(a["labels"].max(initial=-1)) for a in arrays.values()) + 1
    return [str(i) for i in range(k)]
