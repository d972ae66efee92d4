"""scan_dataset: both layouts, class order, ids, split selection and every layout error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from corpus import draw_sketch, write_csv_dataset, write_folder_dataset

from featstore.datasets import Dataset, scan_dataset
from featstore.errors import LayoutError


def _ids(dataset: Dataset, split: str) -> list[str]:
    return [item.id for item in dataset.splits[split]]


def _labels(dataset: Dataset, split: str) -> dict[str, int]:
    return {item.id: item.label for item in dataset.splits[split]}


def _touch_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_sketch((8, 8)).save(path, "PNG")  # the scanner never opens it; any bytes would do
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- image folders -------------------------------------------------------------------------


def test_folder_layout(tmp_path: Path) -> None:
    ds = scan_dataset(write_folder_dataset(tmp_path))
    assert (ds.layout, ds.root, ds.test_order) == ("folders", tmp_path.resolve(), None)
    assert ds.classes == ("cat", "dog", "owl")
    assert list(ds.splits) == ["train", "val", "test"]
    assert _ids(ds, "train")[:3] == ["cat/cat_000.png", "cat/cat_001.jpg", "cat/cat_002.png"]
    assert _labels(ds, "val") == {"cat/cat_val_000.png": 0, "dog/dog_val_000.png": 1, "owl/owl_val_000.png": 2}
    assert _ids(ds, "test") == [f"mistery_category/test_{i:03d}.{('png', 'jpg')[i % 2]}" for i in range(4)]
    assert {item.label for item in ds.splits["test"]} == {-1}
    for items in ds.splits.values():
        assert [i.id for i in items] == sorted(i.id for i in items)
        assert all(i.path.is_absolute() and i.path.is_file() for i in items)


@pytest.mark.parametrize(
    "names",
    [
        ("train", "val", "test"),
        ("train", "valid", "test"),
        ("train_images", "valid_images", "test_images"),
        ("train_images", "val", "test"),
    ],
)
def test_folder_naming_variants(tmp_path: Path, names: tuple[str, str, str]) -> None:
    write_folder_dataset(tmp_path)
    for old, new in zip(("train_images", "val_images", "test_images"), names):
        os.rename(tmp_path / old, tmp_path / new)
    ds = scan_dataset(tmp_path)
    assert list(ds.splits) == ["train", "val", "test"]
    assert [len(items) for items in ds.splits.values()] == [9, 3, 4]


def test_two_folders_for_one_split_is_an_error(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path)
    (tmp_path / "val").mkdir()
    with pytest.raises(LayoutError, match=r"both val/ and val_images/ are the val split"):
        scan_dataset(tmp_path)


def test_classes_are_sorted_names(tmp_path: Path) -> None:
    ds = scan_dataset(write_folder_dataset(tmp_path, classes=("b", "a", "C"), val_per_class=0, test=0))
    assert ds.classes == ("C", "a", "b")  # plain sorted(): ImageFolder order, upper case first
    assert {item.id.split("/")[0]: item.label for item in ds.splits["train"]} == {"C": 0, "a": 1, "b": 2}


def test_empty_class_folder_keeps_its_index(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path, classes=("a", "c"), val_per_class=0, test=0)
    (tmp_path / "train_images" / "b").mkdir()
    ds = scan_dataset(tmp_path)
    assert ds.classes == ("a", "b", "c")
    assert sorted(set(_labels(ds, "train").values())) == [0, 2]


def test_classes_come_from_val_without_train(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path)
    os.rename(tmp_path / "train_images", tmp_path / ".old_train")
    ds = scan_dataset(tmp_path)
    assert ds.classes == ("cat", "dog", "owl") and list(ds.splits) == ["val", "test"]


def test_val_class_missing_from_train_is_an_error(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path)
    _touch_image(tmp_path / "val_images" / "yak" / "x.png")
    with pytest.raises(LayoutError, match="lacks: yak"):
        scan_dataset(tmp_path)


def test_images_outside_class_folders_are_an_error(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path)
    _touch_image(tmp_path / "train_images" / "loose.png")
    with pytest.raises(LayoutError, match=r"1 image\(s\) outside class folders \(loose.png\)"):
        scan_dataset(tmp_path)


def test_test_split_flat_or_in_several_dummy_folders(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path, test=0)
    for rel in ("b.png", "a/x.jpg", "z/y/w.png"):
        _touch_image(tmp_path / "test_images" / rel)
    ds = scan_dataset(tmp_path)
    assert _labels(ds, "test") == {"a/x.jpg": -1, "b.png": -1, "z/y/w.png": -1}


def test_file_filtering_and_nested_ids(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path, classes=("cat",), per_class=1, val_per_class=0, test=0)
    cat = tmp_path / "train_images" / "cat"
    for rel in ("UPPER.JPG", "deep/er/x.Png", "y.tiff", "z.pgm", "w.webp"):
        _touch_image(cat / rel)
    for rel in (".hidden.png", ".cache/x.png", "notes.txt", "x.svg", "Thumbs.db", "x.png.part"):
        _touch_image(cat / rel)
    (tmp_path / "train_images" / ".ipynb_checkpoints").mkdir()
    ds = scan_dataset(tmp_path)
    assert ds.classes == ("cat",)
    assert _ids(ds, "train") == sorted(
        f"cat/{rel}" for rel in ("UPPER.JPG", "cat_000.png", "deep/er/x.Png", "w.webp", "y.tiff", "z.pgm")
    )


def test_scanning_never_opens_images(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path)
    (tmp_path / "train_images" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    assert "cat/broken.jpg" in _ids(scan_dataset(tmp_path), "train")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_terminates(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path)
    os.symlink(tmp_path / "test_images", tmp_path / "test_images" / "mistery_category" / "loop")
    assert len(scan_dataset(tmp_path).splits["test"]) == 4


def test_split_selection(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path)
    ds = scan_dataset(tmp_path, splits=["test"])
    assert list(ds.splits) == ["test"] and ds.classes == ("cat", "dog", "owl")
    assert list(scan_dataset(tmp_path, splits=["valid", "train"]).splits) == ["train", "val"]


def test_asking_for_an_absent_split_lists_the_found_ones(tmp_path: Path) -> None:
    write_folder_dataset(tmp_path, val_per_class=0)
    with pytest.raises(LayoutError, match=r"split\(s\) val not found in .*; found: train, test"):
        scan_dataset(tmp_path, splits=["train", "val"])


def test_no_layout(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    expected = r"no dataset layout found in .*train_images/.*train\.csv.*found: images/"
    with pytest.raises(LayoutError, match=expected):
        scan_dataset(tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="does not exist"):
        scan_dataset(tmp_path / "nope")


def test_no_images_at_all(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "readme.txt").write_text("x")
    with pytest.raises(LayoutError, match="no images found"):
        scan_dataset(tmp_path)


# --- Boostcamp CSV -------------------------------------------------------------------------


def test_csv_layout(tmp_path: Path) -> None:
    ds = scan_dataset(write_csv_dataset(tmp_path, classes=("zebra", "ant")))
    assert (ds.layout, ds.classes) == ("csv", ("zebra", "ant"))  # classes[target], not sorted
    assert list(ds.splits) == ["train", "test"]
    assert _labels(ds, "train")["ant/ant_000.png"] == 1 and _labels(ds, "train")["zebra/zebra_002.png"] == 0
    assert _ids(ds, "test") == ["test_000.png", "test_001.jpg", "test_002.png", "test_003.jpg"]
    assert ds.test_order == ("test_003.jpg", "test_002.png", "test_001.jpg", "test_000.png")
    assert {item.label for item in ds.splits["test"]} == {-1}
    assert ds.splits["train"][0].path == tmp_path.resolve() / "train" / "ant" / "ant_000.png"
    assert all(item.path.is_file() for items in ds.splits.values() for item in items)


def test_csv_val_extra_columns_bom_and_backslashes(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path, val_per_class=1)
    lines = (tmp_path / "train.csv").read_text().splitlines()
    rows = [f"{i},{row.replace('/', chr(92))},x" for i, row in enumerate(lines[1:])]
    header = "\ufeffid,class_name,image_path,target,note"  # BOM as Excel writes it, extra columns
    (tmp_path / "train.csv").write_text("\n".join([header, *rows]) + "\n\n")
    ds = scan_dataset(tmp_path)
    assert list(ds.splits) == ["train", "val", "test"]
    assert _labels(ds, "val") == {"cat/cat_003.jpg": 0, "dog/dog_003.jpg": 1, "owl/owl_003.jpg": 2}
    assert _ids(ds, "train")[0] == "cat/cat_000.png"


def test_csv_wins_over_folders(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path)  # has train/ and test/ folders too
    assert scan_dataset(tmp_path).layout == "csv"


def test_csv_test_order_only_when_test_is_scanned(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path)
    ds = scan_dataset(tmp_path, splits=["train"])
    assert ds.test_order is None and ds.classes == ("cat", "dog", "owl")


TRAIN_HEADER = "class_name,image_path,target\n"


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "cat,cat/cat_000.png,0\ncat,cat/cat_001.jpg,1\n",
            r"train\.csv line 3: class 'cat' has target 1, but target 0 on line 2",
        ),
        (
            "cat,cat/cat_000.png,0\ndog,dog/dog_000.png,0\n",
            r"train\.csv line 3: target 0 is 'dog', but 'cat' on line 2",
        ),
        (
            "cat,cat/cat_000.png,0\ndog,dog/dog_000.png,2\n",
            r"train\.csv line 3: targets must be exactly 0\.\.1 .*out of range: 2",
        ),
        ("cat,cat/cat_000.png,-1\n", r"line 2: targets must be exactly 0\.\.0"),
        ("cat,cat/cat_000.png\n", r"train\.csv line 2: 2 field\(s\), the header has 3"),
        ("cat,cat/cat_000.png,0,extra\n", r"line 2: 4 field\(s\)"),
        ("cat,cat/cat_000.png,zero\n", r"line 2: target 'zero' is not an integer"),
        ("cat,,0\n", r"line 2: empty value"),
        (
            "cat,cat/cat_000.png,0\ncat,./cat/cat_000.png,0\n",
            r"line 3: image_path 'cat/cat_000.png' already listed in train\.csv line 2",
        ),
        ("cat,../outside.png,0\n", r"line 2: image_path '\.\./outside\.png' must be a relative path"),
        ("cat,/etc/passwd,0\n", r"must be a relative path"),
    ],
)
def test_csv_row_errors(tmp_path: Path, body: str, message: str) -> None:
    write_csv_dataset(tmp_path)
    _write(tmp_path / "train.csv", TRAIN_HEADER + body)
    with pytest.raises(LayoutError, match=message):
        scan_dataset(tmp_path)


def test_csv_missing_column(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path)
    _write(tmp_path / "train.csv", "class,image_path,target\ncat,cat/cat_000.png,0\n")
    expected = r"train\.csv: missing column\(s\) class_name; header is class,image_path,target"
    with pytest.raises(LayoutError, match=expected):
        scan_dataset(tmp_path)


def test_csv_missing_files_are_listed_and_counted(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path)
    rows = "".join(f"cat,cat/gone_{i}.png,0\n" for i in range(7))
    _write(tmp_path / "train.csv", TRAIN_HEADER + "cat,cat/cat_000.png,0\n" + rows)
    expected = r"train\.csv: 7 listed file\(s\) missing .*cat/gone_0\.png, .*cat/gone_4\.png, \.\.\. \(2 more\)"
    with pytest.raises(LayoutError, match=expected):
        scan_dataset(tmp_path)


def test_csv_duplicate_test_path(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path)
    _write(tmp_path / "test.csv", "image_path\ntest_000.png\ntest_001.jpg\ntest_000.png\n")
    expected = r"test\.csv line 4: image_path 'test_000\.png' already listed in test\.csv line 2"
    with pytest.raises(LayoutError, match=expected):
        scan_dataset(tmp_path)


def test_csv_val_must_agree_with_train(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path, val_per_class=1)
    _write(tmp_path / "val.csv", TRAIN_HEADER + "cat,cat/cat_003.jpg,1\n")
    expected = r"val\.csv line 2: class 'cat' with target 1 does not match train\.csv"
    with pytest.raises(LayoutError, match=expected):
        scan_dataset(tmp_path)


def test_csv_file_in_train_and_val(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path, val_per_class=1)
    _write(tmp_path / "val.csv", TRAIN_HEADER + "cat,cat/cat_000.png,0\n")
    with pytest.raises(LayoutError, match=r"val\.csv line 2: .*already listed in train\.csv line 2"):
        scan_dataset(tmp_path)


def test_csv_absent_split(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path)
    with pytest.raises(LayoutError, match=r"split\(s\) val not found .*; found: train, test"):
        scan_dataset(tmp_path, splits=["val"])
