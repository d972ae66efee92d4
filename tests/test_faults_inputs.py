"""Hostile inputs on purpose: symlink loops and cross-class links, dangling links, names that are not UTF-8,
hidden folders, a huge stray file, and arrays to import that would corrupt a feature set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from corpus import write_folder_dataset
from featstore.datasets import scan_dataset
from featstore.errors import ImageDecodeError, StoreError
from featstore.extract import ExtractOptions, extract
from featstore.images import read_bytes
from featstore.importer import import_arrays
from featstore.store import open_feature_set

OPTS = ExtractOptions(device="cpu", workers=0, batch_size=4)


def _labels(root: Path, split: str = "train") -> dict[str, int]:
    return {i.id: i.label for i in scan_dataset(root).splits[split]}


def test_symlink_loop_and_cross_class_link_cannot_relabel_images(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2)
    clean = _labels(root)
    train = root / "train_images"
    os.symlink("..", train / "cat" / "loop")  # back up to the split: cat/loop/dog/... would be dogs labeled cat
    os.symlink("../dog", train / "cat" / "dogs")  # into another class folder
    os.symlink(".", train / "owl" / "self")
    assert _labels(root) == clean


def test_symlinked_class_folder_still_works(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2)
    train = root / "train_images"
    os.rename(train / "owl", tmp_path / "owl_elsewhere")
    os.symlink(tmp_path / "owl_elsewhere", train / "owl")
    labels = _labels(root)
    assert labels["owl/owl_000.png"] == 2 and len(labels) == 6


def test_dangling_links_and_non_utf8_names_are_failed_images_with_a_reason(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2)
    cat = root / "train_images" / "cat"
    os.symlink(tmp_path / "nowhere.png", cat / "gone.png")
    bad = os.fsencode(str(cat)) + b"/caf\xe9.png"  # latin-1, not UTF-8
    with open(bad, "wb") as f:
        f.write((cat / "cat_000.png").read_bytes())
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    reasons = {f["id"]: f["reason"] for f in rep.failures}
    assert "dangling symbolic link" in reasons["cat/gone.png"]
    assert reasons["cat/caf\\xe9.png"] == "file name is not valid UTF-8 (rename the file)"
    assert len(open_feature_set("pixels", cache=tmp_path / "cache").load("train")) == 6


def test_hidden_folders_are_skipped_and_reported(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2)
    hidden = root / "train_images" / "cat" / ".ipynb_checkpoints"
    hidden.mkdir()
    (hidden / "x.png").write_bytes((root / "train_images" / "cat" / "cat_000.png").read_bytes())
    (root / "train_images" / ".cache").mkdir()
    ds = scan_dataset(root)
    assert set(ds.hidden) == {"train_images/cat/.ipynb_checkpoints/", "train_images/.cache/"}
    assert "cat/.ipynb_checkpoints/x.png" not in {i.id for i in ds.splits["train"]}
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    assert set(rep.hidden) == set(ds.hidden)


def test_huge_non_image_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "movie.jpg"
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42")
        f.truncate(64 * 2**20)  # sparse: 64 MB on paper, nothing on disk
    with pytest.raises(ImageDecodeError, match="match no image format"):
        read_bytes(path, sniff_above=2**20)
    small = tmp_path / "ok.jpg"
    small.write_bytes(b"\xff\xd8\xff" + bytes(2**20 + 10))
    assert len(read_bytes(small, sniff_above=2**20)) == 2**20 + 13  # an image signature: read whole


def _npz(path: Path, *, labels, ids=None, n: int | None = None, seed: int = 0, **extra) -> Path:
    n = len(labels) if n is None else n
    feats = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    np.savez(path, features=feats, labels=np.asarray(labels), ids=np.array(ids or [f"i{k}" for k in range(n)]), **extra)
    return path


@pytest.mark.parametrize("case, match", [
    ("float labels", "float labels"),
    ("negative labels", "negative label -3"),
    ("absurd label", "would make 1,000,001 classes"),
    ("empty train", "holds no rows"),
    ("same image in two splits", "images are in both train and val"),
    ("duplicate class names", "class names given twice: cat"),
])
def test_import_refuses_arrays_that_would_corrupt_the_set(tmp_path: Path, case: str, match: str) -> None:
    train = _npz(tmp_path / "train.npz", labels=[0, 1, 2, 0])
    files, classes = {"train": train}, None
    if case == "float labels":
        files["train"] = _npz(tmp_path / "f.npz", labels=[0.0, 1.5, 2.0, 0.0])
    elif case == "negative labels":
        files["train"] = _npz(tmp_path / "f.npz", labels=[0, 1, -3, 0])
    elif case == "absurd label":
        files["train"] = _npz(tmp_path / "f.npz", labels=[0, 1, 1_000_000, 0])
    elif case == "empty train":
        files["train"] = _npz(tmp_path / "f.npz", labels=np.zeros(0, dtype=np.int64))
    elif case == "same image in two splits":
        files["val"] = train
    else:
        classes = ["cat", "dog", "cat"]
    with pytest.raises(StoreError, match=match):
        import_arrays("x", files, cache=tmp_path / "cache", classes=classes)
    assert not (tmp_path / "cache").exists()  # refused before anything is written


def test_import_accepts_whole_float_labels_and_same_ids_with_other_vectors(tmp_path: Path) -> None:
    files = {"train": _npz(tmp_path / "t.npz", labels=[0.0, 1.0, 2.0, 0.0]),
             "val": _npz(tmp_path / "v.npz", labels=[0, 1, 2, 0], seed=1)}  # same ids, other images
    import_arrays("x", files, cache=tmp_path / "cache")
    assert open_feature_set("x", cache=tmp_path / "cache").load("train").labels.tolist() == [0, 1, 2, 0]
