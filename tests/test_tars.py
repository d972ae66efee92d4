"""The webdataset tar layout: the same images from folders and from tars give the same vectors and labels."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from corpus import write_folder_dataset
from featstore.datasets import scan_dataset
from featstore.distributed import Rank
from featstore.errors import LayoutError
from featstore.extract import ExtractOptions, _share, extract
from featstore.store import open_feature_set

OPTS = ExtractOptions(device="cpu", batch_size=3, workers=0, shard_rows=8)


def _to_tars(folders: Path, out: Path, *, per_tar: int = 4, label: str = "cls") -> Path:
    """Each split's images as webdataset samples (key = class/stem), `per_tar` samples per tar."""
    ds = scan_dataset(folders)
    out.mkdir()
    (out / "classes.txt").write_text("\n".join(ds.classes) + "\n")
    for split, items in ds.splits.items():
        (out / split).mkdir()
        for t in range(0, len(items), per_tar):
            with tarfile.open(out / split / f"{t // per_tar:06d}.tar", "w") as tf:
                for item in items[t:t + per_tar]:
                    key, ext = item.id.rsplit(".", 1)
                    members = {f"{key}.{ext.lower()}": item.path.read_bytes()}
                    if split != "test":
                        members[f"{key}.{label}"] = (str(item.label) if label == "cls"
                                                    else ds.classes[item.label]).encode()
                    for name, data in members.items():
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tf.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.parametrize("label", ["cls", "txt"])
def test_folders_and_tars_give_the_same_vectors(tmp_path: Path, label: str) -> None:
    folders = write_folder_dataset(tmp_path / "data", per_class=3, test=2)
    tars = _to_tars(folders, tmp_path / "tars", label=label)
    ds = scan_dataset(tars)
    assert ds.layout == "webdataset" and ds.classes == scan_dataset(folders).classes
    for name, root in (("folders", folders), ("tars", tars)):
        extract(model="pixels", data=root, cache=tmp_path / name, options=OPTS)
    a, b = open_feature_set("pixels", cache=tmp_path / "folders"), open_feature_set("pixels", cache=tmp_path / "tars")
    for split in a.splits:
        fa, fb = a.load(split), b.load(split)
        assert [i.rsplit(".", 1)[0] for i in fa.ids] == list(fb.ids)
        assert fa.labels.tolist() == fb.labels.tolist()
        np.testing.assert_array_equal(fa.features, fb.features)
    rep = extract(model="pixels", data=tars, cache=tmp_path / "tars", options=OPTS)
    assert sum(r.extracted for r in rep.splits) == 0  # unchanged tars: nothing read again


def test_ranks_take_whole_tars(tmp_path: Path) -> None:
    tars = _to_tars(write_folder_dataset(tmp_path / "data", per_class=3, test=0), tmp_path / "tars", per_tar=2)
    items = scan_dataset(tars).splits["train"]
    shares = [_share(Rank(i, 2), items) for i in range(2)]
    assert sorted(i.id for s in shares for i in s) == sorted(i.id for i in items)
    assert not {i.file for i in shares[0]} & {i.file for i in shares[1]}


def test_tar_layout_needs_classes_txt(tmp_path: Path) -> None:
    tars = _to_tars(write_folder_dataset(tmp_path / "data", per_class=1, test=0), tmp_path / "tars")
    (tars / "classes.txt").unlink()
    with pytest.raises(LayoutError, match="classes.txt is missing"):
        scan_dataset(tars)


def test_verify_rehashes_tar_members(tmp_path: Path) -> None:
    from featstore.verify import verify_set

    tars = _to_tars(write_folder_dataset(tmp_path / "data", per_class=2, test=0), tmp_path / "tars")
    extract(model="pixels", data=tars, cache=tmp_path / "cache", options=OPTS)
    (folder,) = (tmp_path / "cache" / "pixels").iterdir()
    report = verify_set(folder, images=True)
    assert not report.problems, report.problems
