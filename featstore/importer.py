"""featstore import: arrays extracted elsewhere (.npz / .npy / .pt) become a feature set like any other."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from featstore.encoders.weights import file_identity
from featstore.errors import StoreError
from featstore.store import FeatureSetWriter, SplitIndex, default_cache, encoder_dirname, feature_key, now_iso

SPLIT_ORDER = ("train", "val", "test")


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
            if not isinstance(obj, dict):
                raise StoreError(f"{path}: expected a dict with 'features' (and 'labels', 'ids'), got {type(obj).__name__}")
            raw = {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in obj.items()}
        else:
            raise StoreError(f"{path}: expected .npz, .npy or .pt")
    except StoreError:
        raise
    except Exception as e:  # numpy/torch raise many types for damaged or pickled files
        raise StoreError(f"cannot read {path}: {str(e).splitlines()[0][:200]}") from e
    return _check(raw, path=path, split=split)


def _check(raw: dict[str, Any], *, path: Path, split: str) -> dict[str, np.ndarray]:
    feats = raw.get("features", raw.get("feats", raw.get("x")))
    if feats is None:
        raise StoreError(f"{path}: no 'features' array (found: {', '.join(raw) or 'nothing'})")
    feats = np.asarray(feats)
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating):
        raise StoreError(f"{path}: features must be a 2-D float array, got {feats.dtype} {feats.shape}")
    if not np.isfinite(feats).all():
        raise StoreError(f"{path}: features contain NaN or Inf")
    if feats.size and np.abs(feats).max() > 65504:
        raise StoreError(f"{path}: values beyond float16 range (the store keeps float16); rescale them first")
    n = len(feats)
    labels = np.asarray(raw.get("labels", raw.get("y", np.full(n, -1))), dtype=np.int64).reshape(-1)
    ids = raw.get("ids")
    ids = np.array([f"{split}/{k:07d}" for k in range(n)], dtype=object) if ids is None else np.asarray(ids).astype(str).astype(object)
    if len(labels) != n or len(ids) != n:
        raise StoreError(f"{path}: {n} features but {len(labels)} labels and {len(ids)} ids")
    if len(set(ids)) != n:
        raise StoreError(f"{path}: duplicate ids")
    if split != "test" and (labels < 0).any():
        raise StoreError(f"{path}: the {split} split needs labels (an .npz/.pt with 'labels'; .npy holds features only)")
    return {"features": feats, "labels": labels, "ids": ids, **({"classes": raw["classes"]} if "classes" in raw else {})}


def import_arrays(name: str, files: dict[str, Path], *, cache: Path | None = None,
                  classes: list[str] | None = None) -> Path:
    """Write the given splits as feature set `name`; returns its folder. Class names default to the label values."""
    arrays = {s: load_arrays(p, split=s) for s, p in files.items() if p is not None}
    if "train" not in arrays:
        raise StoreError("import needs at least --train")
    dims = {s: a["features"].shape[1] for s, a in arrays.items()}
    if len(set(dims.values())) != 1:
        raise StoreError(f"feature dimensions differ between splits: {dims}")
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


def _classes(arrays: dict[str, dict[str, np.ndarray]]) -> list[str]:
    for a in arrays.values():
        if "classes" in a:
            return [str(c) for c in a["classes"]]
    k = max(int(a["labels"].max(initial=-1)) for a in arrays.values()) + 1
    return [str(i) for i in range(k)]
