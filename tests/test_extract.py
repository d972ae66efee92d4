"""Extraction into the store: layouts, resume, content-hash reuse, bad inputs, locking, non-finite output."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from filelock import FileLock

from corpus import BAD_REASONS, draw_sketch, write_bad_images, write_csv_dataset, write_folder_dataset, write_odd_images
from featstore.encoders import register_encoder
from featstore.encoders.pixels import pixels_spec
from featstore.encoders.registry import register_backend
from featstore.encoders.pixels import PixelsBackend
from featstore.errors import StoreLockedError
from featstore.extract import ExtractOptions, extract
from featstore.images import decode_image
from featstore.store import FeatureSetWriter, list_feature_sets, open_feature_set
from featstore.store.shards import STALE_TEMP_S

OPTS = ExtractOptions(device="cpu", batch_size=2, workers=0, shard_rows=4)


def _all(cache: Path, ref: str = "pixels") -> dict[str, tuple]:
    fs = open_feature_set(ref, cache=cache)
    return {s: (list(d.ids), d.labels.tolist(), d.features) for s in fs.splits for d in [fs.load(s)]}


def _same_store(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for s in a:
        assert a[s][0] == b[s][0] and a[s][1] == b[s][1]
        np.testing.assert_array_equal(a[s][2], b[s][2])


def test_folder_layout_end_to_end(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", classes=("owl", "Cat", "dog"), per_class=3)
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    assert [r.split for r in rep.splits] == ["train", "val", "test"]
    fs = open_feature_set("pixels", cache=tmp_path / "cache")
    assert fs.classes == ["Cat", "dog", "owl"]  # sorted, ImageFolder order
    train = fs.load("train")
    assert list(train.ids) == sorted(train.ids) and train.ids[0] == "Cat/Cat_000.png"
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert train.features.shape == (9, 1024)
    test = fs.load("test")
    assert (test.labels == -1).all() and test.ids[0].startswith("mistery_category/")
    # the pixels encoder is grayscale 32x32 in [0, 1]: check one vector by hand
    img = decode_image(root / "train_images" / "Cat" / "Cat_000.png").resize((32, 32), 3)
    np.testing.assert_allclose(train.features[0], np.asarray(img, np.float32).ravel() / 255, atol=1e-3)
    with h5py.File(next(fs.folder.glob("train-*.h5"))) as f:
        assert f["features"].dtype == np.float16 and set(f) == {"features", "ids", "labels", "sha1"}


def test_csv_layout(tmp_path: Path) -> None:
    root = write_csv_dataset(tmp_path / "data")
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    fs = open_feature_set("pixels", cache=tmp_path / "cache")
    assert fs.splits == ["train", "test"] and fs.dataset["layout"] == "csv"
    assert sorted(fs.dataset["test_order"]) == list(fs.load("test").ids)


def _interrupt_after(n: int):
    class Stop:
        calls = 0

        def start(self, split, total): ...
        def end(self): ...

        def advance(self, k):
            Stop.calls += 1
            if Stop.calls > n:
                raise KeyboardInterrupt

    return Stop()


def test_resume_after_interrupt_equals_uninterrupted(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=5)
    with pytest.raises(KeyboardInterrupt):
        extract(model="pixels", data=root, cache=tmp_path / "a", options=OPTS, progress=_interrupt_after(4))
    rep = extract(model="pixels", data=root, cache=tmp_path / "a", options=OPTS)
    assert rep.splits[0].reused > 0  # the rows computed before the interrupt were kept
    extract(model="pixels", data=root, cache=tmp_path / "b", options=OPTS)
    _same_store(_all(tmp_path / "a"), _all(tmp_path / "b"))


def test_resume_after_hard_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed process flushes nothing and writes no manifest: finished shards are adopted, nothing else."""
    root = write_folder_dataset(tmp_path / "data", per_class=5)

    gone = subprocess.Popen(["true"])
    gone.wait()
    host, old = socket.gethostname(), time.time() - 2 * STALE_TEMP_S
    temps = {"dead": f".tmp@{host}@{gone.pid}@deadbeef@train.h5", "live": f".tmp@{host}@{os.getpid()}@0badf00d@train.h5",
             "other host": f".tmp@not-{host}@{gone.pid}@feedface@train.h5",
             "just killed": f".tmp@{host}@{gone.pid}@c0ffee00@val.h5"}

    def killed(self, *exc):  # what SIGKILL leaves: the shards already renamed, plus stray temp files
        for name, temp in temps.items():
            (self.folder / temp).write_bytes(b"half")
            if name != "just killed":
                os.utime(self.folder / temp, (old, old))
        self._lock.release()

    monkeypatch.setattr(FeatureSetWriter, "__exit__", killed)
    with pytest.raises(KeyboardInterrupt):
        extract(model="pixels", data=root, cache=tmp_path / "a", options=OPTS, progress=_interrupt_after(4))
    monkeypatch.undo()
    folder = next((tmp_path / "a").glob("*/*"))  # the feature set folder (no manifest yet: nothing to open)
    rep = extract(model="pixels", data=root, cache=tmp_path / "a", options=OPTS)
    assert rep.splits[0].reused == 8  # exactly the two complete shards (4 rows each), not the lost buffer
    # the next writer holds the set's lock and no worker lock is held: no other process can be writing, every temp is litter
    assert not list(folder.glob(".tmp@*"))
    extract(model="pixels", data=root, cache=tmp_path / "b", options=OPTS)
    _same_store(_all(tmp_path / "a"), _all(tmp_path / "b"))


def test_only_new_or_changed_images_are_computed(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    extract(model="pixels", data=root, cache=cache, options=OPTS)
    before = _all(cache)
    changed = root / "train_images" / "dog" / "dog_001.jpg"
    draw_sketch((64, 64), 777).save(changed, "JPEG")
    draw_sketch((64, 64), 778).save(root / "train_images" / "owl" / "owl_new.png")
    os.utime(root / "train_images" / "cat" / "cat_000.png")  # touched, same bytes: hash says reuse
    (root / "val_images" / "cat" / "cat_val_000.png").unlink()
    rep = extract(model="pixels", data=root, cache=cache, options=OPTS)
    train, val = rep.splits[0], rep.splits[1]
    assert (train.extracted, train.reused) == (2, 8) and (val.extracted, val.images) == (0, 2)
    after = _all(cache)
    k = after["train"][0].index("dog/dog_001.jpg")
    assert not np.array_equal(after["train"][2][k], before["train"][2][before["train"][0].index("dog/dog_001.jpg")])
    assert "owl/owl_new.png" in after["train"][0] and "cat/cat_val_000.png" not in after["val"][0]
    assert len(set(after["train"][0])) == len(after["train"][0])  # the changed image is not duplicated


def test_bad_inputs_are_skipped_and_recorded(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2)
    thing = root / "train_images" / "thing"
    write_bad_images(thing)
    odd = write_odd_images(thing)
    (thing / "unreadable.png").mkdir()  # a folder named like an image
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    reasons = {f["id"].split("/")[-1]: f["reason"] for f in rep.failures}
    for name, why in BAD_REASONS.items():
        assert why in reasons[name], (name, reasons.get(name))
    train = open_feature_set("pixels", cache=tmp_path / "cache").load("train")
    assert {f"thing/{n}" for n in odd} <= set(train.ids)
    assert not set(reasons) & {i.split("/")[-1] for i in train.ids}
    assert np.isfinite(train.features).all()


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data")
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    with FileLock(str(rep.folder / ".lock")):
        with pytest.raises(StoreLockedError, match="being written by another process"):
            extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)


class _NanOnDark(torch.nn.Module):
    """NaN for dark images when autocast is on (an fp16/bf16 overflow stand-in); exact at fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.flatten(1).clone()
        if torch.is_autocast_enabled("cpu"):
            y[y.mean(1) < 0.5] = float("nan")
        return y


class _NanBackend(PixelsBackend):
    prefix = "nan-test"

    def build(self, spec, *, weights, random_weights):
        return _NanOnDark()


register_backend(_NanBackend())
register_encoder("nan_test")(lambda: pixels_spec("nan_test").__class__(
    **{**pixels_spec("nan_test").__dict__, "backend": "nan-test"}))


def test_non_finite_output_is_a_failure_of_that_image_and_a_retry_recomputes_just_it(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2, test=0)
    from PIL import Image

    Image.new("L", (64, 64), 0).save(root / "train_images" / "dog" / "zz_black.png")
    bf16 = replace(OPTS, precision="bf16")
    rep = extract(model="nan_test", data=root, cache=tmp_path / "cache", options=bf16)
    assert [(f["id"], f["reason"]) for f in rep.failures] == [
        ("dog/zz_black.png", "non-finite output at bf16 (recompute with --retry-precision fp32)")]
    fs = open_feature_set("nan_test", cache=tmp_path / "cache")
    train = fs.load("train")
    assert "dog/zz_black.png" not in train.ids and len(train.ids) == rep.splits[0].images - 1  # the rest stored
    assert np.isfinite(train.features).all()

    rep = extract(model="nan_test", data=root, cache=tmp_path / "cache", options=replace(bf16, retry_precision="fp32"))
    assert not rep.failures and rep.splits[0].extracted == 1  # only the failed image is computed again
    assert any("1 images non-finite at bf16 were stored from fp32" in n for n in rep.notes)
    row = open_feature_set("nan_test", cache=tmp_path / "cache").load("train")
    assert "dog/zz_black.png" in row.ids and np.isfinite(row.features).all()


def test_ls_lists_sets_and_copies_are_independent(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data")
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    extract(model="pixels", data=root, cache=tmp_path / "cache", name="other", options=OPTS)
    sets = list_feature_sets(tmp_path / "cache")
    assert len(sets) == 2 and len({s.key for s in sets}) == 2
    shutil.rmtree(root)
    assert open_feature_set(sets[0].key[:6], cache=tmp_path / "cache").load("train").features.shape[0] == 9


def test_info_warns_about_images_shared_between_splits(tmp_path: Path) -> None:
    from featstore.leaks import shared_images

    root = write_folder_dataset(tmp_path / "data")
    shutil.copy(root / "train_images" / "dog" / "dog_000.png", root / "val_images" / "dog" / "copy.png")
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    shared = shared_images(open_feature_set("pixels", cache=tmp_path / "cache"))
    assert shared == {("train", "val"): [("dog/dog_000.png", "dog/copy.png")]}


def test_noop_rerun_rewrites_nothing(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2, test=1)
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    (folder,) = (tmp_path / "cache" / "pixels").iterdir()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir() if p.is_file()}
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    assert sum(r.extracted for r in rep.splits) == 0
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir() if p.is_file()}
    assert after == before  # manifest, indexes, shards: not one byte or mtime changed
    (root / "train_images" / "dog" / "dog_000.png").unlink()  # a real change is still recorded
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    assert "dog/dog_000.png" not in open_feature_set("pixels", cache=tmp_path / "cache").load("train").ids


def test_files_that_lost_their_mtimes_are_hashed_not_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2, test=1)
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    ref = _all(tmp_path / "cache")
    for p in root.rglob("*.*"):
        os.utime(p, ns=(10**18, 10**18))  # what a copy without -p does: same bytes, new mtimes
    import featstore.loader

    monkeypatch.setattr(featstore.loader, "decode_image", lambda *a, **k: pytest.fail("decoded a stored image"))
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    assert sum(r.extracted for r in rep.splits) == 0 and sum(r.reused for r in rep.splits) == sum(r.images for r in rep.splits)
    _same_store(_all(tmp_path / "cache"), ref)
    assert open_feature_set("pixels", cache=tmp_path / "cache").load("train").ids.size  # the index took the new mtimes
