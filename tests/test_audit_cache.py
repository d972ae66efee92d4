"""The audit's pairs kept beside the set: reused by the next fit, recomputed whenever what they depend on changed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

import featstore.audit.audit as audit_mod
import featstore.audit.cache as cache_mod
from featstore.audit import audit_feature_set
from featstore.extract import extract
from featstore.store import open_feature_set


def _draw(path, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)


@pytest.fixture()
def store(tmp_path):
    """Two classes, a val image that is a byte-identical copy of a train image (one leak)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for split, n in (("train", 5), ("val", 2)):
        for k in ("a", "b"):
            for i in range(n):
                _draw(data / split / k / f"{i}.png", rng)
    shutil.copy(data / "train/a/0.png", data / "val/a/copy.png")
    extract(model="pixels", data=data, cache=tmp_path / "cache")
    audit_mod._MEMO.clear()  # each audit below starts from the disk, as a new process would
    yield data, tmp_path / "cache"
    audit_mod._MEMO.clear()


def _audit(cache, **kw):
    audit_mod._MEMO.clear()
    return audit_feature_set(open_feature_set("pixels", cache=cache), **kw)


def _no_compute(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the pairs were recomputed")

    monkeypatch.setattr(audit_mod, "close_pairs", refuse)


def test_second_audit_reads_the_pairs_and_does_not_recompute(store, monkeypatch):
    _, cache = store
    first = _audit(cache)
    assert not first.cached and len(first.leaks) == 1
    assert len(list((open_feature_set("pixels", cache=cache).folder / cache_mod.FOLDER).glob("*.npz"))) == 1
    _no_compute(monkeypatch)
    again = _audit(cache)
    assert again.cached and "cached" in again.summary()
    for a, b in zip(first.pairs, again.pairs):
        np.testing.assert_array_equal(a, b)
    assert [c.rows.tolist() for c in again.clusters] == [c.rows.tolist() for c in first.clusters]


def test_a_changed_set_threshold_or_version_misses(store, monkeypatch):
    data, cache = store
    _audit(cache)
    assert not _audit(cache, threshold=0.95).cached  # another threshold: its own entry
    monkeypatch.setattr(cache_mod, "AUDIT_VERSION", cache_mod.AUDIT_VERSION + 1)
    assert not _audit(cache).cached  # the audit's code changed
    monkeypatch.undo()
    assert _audit(cache).cached
    shutil.copy(data / "train/b/1.png", data / "val/b/copy.png")  # a second leak, added to the same set
    extract(model="pixels", data=data, cache=cache)
    res = _audit(cache)
    assert not res.cached and len(res.leaks) == 2


def test_damaged_or_unwritable_cache_costs_a_recomputation_only(store, monkeypatch):
    _, cache = store
    first = _audit(cache)
    folder = open_feature_set("pixels", cache=cache).folder / cache_mod.FOLDER
    for f in folder.glob("*.npz"):
        f.write_bytes(b"not an npz")
    res = _audit(cache)
    assert not res.cached and len(res.leaks) == len(first.leaks)
    assert _audit(cache).cached  # rewritten by the recomputation

    def read_only(*a, **k):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(cache_mod, "replace_atomically", read_only)
    res = _audit(cache, threshold=0.8)
    assert not res.cached and len(res.leaks) == len(first.leaks)


def test_fp32_screen_finds_the_same_pairs_as_bf16():
    """A CPU without fast bf16 screens in fp32 (emulated bf16 is ~60x slower); the result is exact either way."""
    from featstore.audit import array_rows, close_pairs

    rng = np.random.default_rng(0)
    x = rng.standard_normal((900, 32)).astype(np.float32)
    x[600:700] = x[:100] + 0.3 * rng.standard_normal((100, 32))
    rows = array_rows(x, ids=np.arange(900).astype(str), labels=np.zeros(900, int), splits=np.full(900, "train", object),
                      block_rows=200)
    got = {screen: close_pairs(rows.blocks, n=900, dim=32, threshold=0.8, screen=screen) for screen in ("bf16", "fp32")}
    assert len(got["bf16"][0]) >= 90
    for a, b in zip(got["bf16"], got["fp32"]):
        np.testing.assert_array_equal(a, b)
