"""Faults injected into a feature set on purpose: flipped bytes, truncated and deleted files, damaged manifests.

Each test damages a store the way a disk, a sync tool or a clumsy user would, then checks that reads refuse
it by name, `featstore verify` reports it (exit 1), and `--repair` or the next extract restores a store equal
to a clean run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from featstore.cli import featstore_app
from corpus import assert_same_store, store_contents, write_folder_dataset
from featstore.errors import StoreError
from featstore.extract import ExtractOptions, extract
from featstore.store import open_feature_set
from featstore.store.shards import CorruptShardError

OPTS = ExtractOptions(device="cpu", batch_size=4, workers=0, shard_rows=8)
runner = CliRunner()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One dataset and the store a clean run makes of it (the reference every repair must equal)."""
    base = tmp_path_factory.mktemp("clean")
    root = write_folder_dataset(base / "data", per_class=6)
    extract(model="pixels", data=root, cache=base / "cache", options=OPTS)
    return root, store_contents(base / "cache")



def _store(tmp_path: Path, root: Path) -> tuple[Path, Path]:
    cache = tmp_path / "cache"
    extract(model="pixels", data=root, cache=cache, options=OPTS)
    return cache, open_feature_set("pixels", cache=cache).folder


def _verify(cache: Path, *args: str):
    return runner.invoke(featstore_app, ["verify", "--cache", str(cache), *args])


def _flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _feature_offset(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return f["features"].id.get_chunk_info(0).byte_offset + 100


def test_flipped_feature_byte_is_refused_by_name_then_repaired(tmp_path: Path, clean) -> None:
    root, ref = clean
    cache, folder = _store(tmp_path, root)
    shard = folder / "train-00001.h5"
    _flip(shard, _feature_offset(shard))
    fs = open_feature_set("pixels", cache=cache)
    with pytest.raises(CorruptShardError, match="train-00001.h5: fails its checksum"):
        fs.load("train")
    from probes.cli import probes_app

    res = runner.invoke(probes_app, ["fit", "--features", "pixels", "--cache", str(cache), "--runs", str(tmp_path / "r")])
    assert res.exit_code == 1 and "train-00001.h5: fails its checksum" in res.output.replace("\n", "")
    assert "a bug" not in res.output
    res = _verify(cache)
    assert res.exit_code == 1 and "train-00001.h5: fails its checksum" in res.output.replace("\n", " ")
    res = _verify(cache, "--repair")
    assert "quarantined train shard train-00001.h5" in res.output.replace("\n", "")
    assert (folder / "quarantine" / "train-00001.h5").exists() and not shard.exists()
    rep = extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert rep.splits[0].extracted == 8  # exactly the quarantined shard's rows are computed again
    assert rep.splits[0].reused == len(ref["train"][0]) - 8
    assert_same_store(store_contents(cache), ref)
    assert _verify(cache).exit_code == 0


def test_flipped_id_byte_is_caught_by_the_ids_checksum(tmp_path: Path, clean) -> None:
    root, _ = clean
    cache, folder = _store(tmp_path, root)
    shard = folder / "val-00000.h5"
    data = shard.read_bytes()
    pos = data.index(b"cat/cat_val_000.png")  # the utf-8 ids live on the heap, outside fletcher32's reach
    _flip(shard, pos + 4, 0x01)  # 'c' -> 'b': still valid utf-8, another id
    with pytest.raises(CorruptShardError, match="ids fail their checksum"):
        open_feature_set("pixels", cache=cache).load("val")


def test_truncated_shard_is_quarantined_and_recomputed_by_the_next_extract(tmp_path: Path, clean) -> None:
    root, ref = clean
    cache, folder = _store(tmp_path, root)
    shard = folder / "train-00000.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    rep = extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert any("quarantine/train-00000.h5" in r and "truncated" in r for r in rep.repairs)
    assert rep.splits[0].extracted == 8
    assert_same_store(store_contents(cache), ref)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_or_missing_index_is_an_error_never_an_empty_split(tmp_path: Path, clean, damage: str) -> None:
    root, ref = clean
    cache, folder = _store(tmp_path, root)
    index = folder / "index-train.h5"
    if damage == "truncate":
        index.write_bytes(index.read_bytes()[:300])
    else:
        index.unlink()
    with pytest.raises(StoreError, match="index .*index-train.h5"):
        open_feature_set("pixels", cache=cache).load("train")
    assert _verify(cache).exit_code == 1
    res = _verify(cache, "--repair")
    assert res.exit_code == 0, res.output
    assert_same_store(store_contents(cache), ref)  # rebuilt from the shards alone
    rep = extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert rep.splits[0].extracted == 0 and rep.splits[0].reused == len(ref["train"][0])  # hashed, not recomputed


@pytest.mark.parametrize("damage", ["invalid json", "missing keys", "wrong counts", "wrong dim", "deleted"])
def test_damaged_manifest_is_listed_then_rebuilt(tmp_path: Path, clean, damage: str) -> None:
    root, ref = clean
    cache, folder = _store(tmp_path, root)
    extract(model="pixels", data=root, cache=cache, name="other", options=OPTS)  # a healthy neighbour
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    if damage == "invalid json":
        path.write_text(path.read_text()[:-40])
    elif damage == "missing keys":
        path.write_text(json.dumps({k: v for k, v in m.items() if k != "splits"}))
    elif damage == "wrong counts":
        m["splits"]["train"]["count"] = 3
        path.write_text(json.dumps(m))
    elif damage == "wrong dim":
        m["dim"] = 7
        path.write_text(json.dumps(m))
    else:
        path.unlink()
    res = _verify(cache)
    assert res.exit_code == 1
    if damage in ("invalid json", "missing keys", "deleted"):
        ls = runner.invoke(featstore_app, ["ls", "--cache", str(cache)])
        out = ls.output.replace("\n", " ")
        assert ls.exit_code == 0 and "damaged:" in out and "--repair" in out
        assert out.count("pixels") >= 2  # the other set is still listed
    res = _verify(cache, "--repair")
    assert res.exit_code == 0, res.output
    assert_same_store(store_contents(cache), ref)


def test_extract_rebuilds_a_damaged_manifest(tmp_path: Path, clean) -> None:
    root, ref = clean
    cache, folder = _store(tmp_path, root)
    (folder / "manifest.json").write_text("{not json")
    rep = extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert any("manifest rebuilt" in r for r in rep.repairs)
    assert sum(r.extracted for r in rep.splits) == 0
    assert_same_store(store_contents(cache), ref)


def test_verify_images_catches_a_file_replaced_with_same_size_and_mtime(tmp_path: Path, clean) -> None:
    root, _ = clean
    data = tmp_path / "data"
    os.system(f"cp -a {root} {data}")
    cache = tmp_path / "cache"
    extract(model="pixels", data=data, cache=cache, options=OPTS)
    target = data / "train_images" / "cat" / "cat_000.png"
    st = target.stat()
    other = bytearray(target.read_bytes())
    other[-20] ^= 0x01  # same size; inside the PNG's IEND-adjacent bytes: a different file
    target.write_bytes(bytes(other))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _verify(cache).exit_code == 0  # stat-identical: only re-hashing can tell
    res = _verify(cache, "--images")
    assert res.exit_code == 1 and "changed on disk" in res.output and "cat/cat_000.png" in res.output


def test_temp_files_of_killed_writers_are_cleaned_by_the_next_writer(tmp_path: Path, clean) -> None:
    root, _ = clean
    cache, folder = _store(tmp_path, root)
    litter = [folder / ".manifest.json.deadbeef.tmp", folder / ".index-train.h5.deadbeef.tmp"]
    for p in litter:
        p.write_bytes(b"half")
    extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert not any(p.exists() for p in litter)


def test_old_shards_without_checksums_still_read(tmp_path: Path, clean) -> None:
    """Stores written before checksums keep working; verify notes they cannot be verified."""
    root, ref = clean
    cache, folder = _store(tmp_path, root)
    for shard in folder.glob("*-0*.h5"):
        with h5py.File(shard, "r") as f:
            data = {k: f[k][()] for k in f}
            attrs = {k: v for k, v in f.attrs.items() if k not in ("ids_sha1", "header")}
        with h5py.File(shard, "w") as f:
            for k, v in data.items():
                f.create_dataset(k, data=v, dtype=h5py.string_dtype() if k == "ids" else None)
            f.attrs.update(attrs)
    assert_same_store(store_contents(cache), ref)
    res = _verify(cache)
    assert res.exit_code == 0 and "without checksums" in res.output
