"""Extraction by several workers (torchrun ranks, --shard I/N + merge) gives the store one process gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import featstore.job
from featstore.cli import featstore_app
from corpus import write_bad_images, write_folder_dataset
from featstore.distributed import Rank, parse_shard, resolve_rank
from featstore.errors import ExtractionError
from featstore.extract import ExtractOptions, extract, merge
from featstore.store import FeatureSetWriter, list_feature_sets

TORCHRUN = Path(sys.executable).with_name("torchrun")
VIT = ("timm:vit_tiny_patch16_224", "--random-weights")
OPTS = ExtractOptions(device="cpu", batch_size=2, workers=0, shard_rows=3)
CLI_OPTS = ("--device", "cpu", "--batch-size", "2", "--workers", "0", "--shard-rows", "3")
runner = CliRunner()


def _store(cache: Path) -> dict[str, tuple[list[str], list[int], np.ndarray]]:
    """Every split of the one feature set in `cache`, loaded through the reader; ids must be unique."""
    (fs,) = list_feature_sets(cache)
    out = {}
    for split in fs.splits:
        data = fs.load(split)
        assert len(set(data.ids)) == len(data.ids), f"duplicate ids in {split}"
        out[split] = (list(data.ids), data.labels.tolist(), data.features)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for split in a:
        assert a[split][0] == b[split][0] and a[split][1] == b[split][1], split
        assert a[split][2].tobytes() == b[split][2].tobytes(), split  # byte-equal vectors


def _reference(root: Path, cache: Path, model: tuple[str, ...]) -> dict:
    """One process, one thread (as each torchrun rank has), the same batch size."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extract(model=model[0], random_weights="--random-weights" in model, data=root, cache=cache, options=OPTS)
    finally:
        torch.set_num_threads(threads)
    return _store(cache)


def _torchrun_cmd(n: int, root: Path, cache: Path, model: tuple[str, ...]) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc-per-node", str(n), "-m", "featstore", "extract",
            "--model", model[0], *model[1:], "--data", str(root), "--cache", str(cache), *CLI_OPTS]


def _torchrun(n: int, root: Path, cache: Path, model: tuple[str, ...]) -> subprocess.CompletedProcess:
    res = subprocess.run(_torchrun_cmd(n, root, cache, model), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _cli(*args: str) -> object:
    return runner.invoke(featstore_app, list(args))


# --- the work split -------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 7, 9])
def test_strided_slices_cover_every_item_exactly_once(count: int) -> None:
    items = list(range(7))
    slices = [Rank(i, count).take(items) for i in range(count)]
    assert sorted(x for s in slices for x in s) == items  # no padding, no duplicates
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_rank_from_shard_option_or_torchrun_environment() -> None:
    assert parse_shard("1/4") == Rank(1, 4) and Rank(1, 4).lock_name == ".lock-rank-1-of-4"
    assert resolve_rank(None, env={}) == Rank() and Rank().lock_name == ".lock"
    launched = resolve_rank(None, env={"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (launched.index, launched.count, launched.local, launched.torchrun) == (3, 4, 1, True)
    assert resolve_rank(None, env={"RANK": "0", "WORLD_SIZE": "1"}) == Rank()  # torchrun of one: plain run
    for bad in ("4/4", "a/2", "1", "-1/2"):
        with pytest.raises(ExtractionError, match="--shard|expected"):
            parse_shard(bad)
    with pytest.raises(ExtractionError, match="drop --shard"):
        resolve_rank("0/2", env={"RANK": "0", "WORLD_SIZE": "2"})


# --- torchrun -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [("pixels",), VIT], ids=["pixels", "vit_tiny"])
def test_torchrun_two_ranks_equal_one_process(tmp_path: Path, model: tuple[str, ...]) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=4, test=3)
    res = _torchrun(2, root, tmp_path / "ranks", model)
    assert "2 torchrun ranks" in res.stdout and res.stdout.count("store:") == 1  # rank 0 alone reports
    _assert_same(_store(tmp_path / "ranks"), _reference(root, tmp_path / "one", model))


def _worker_pid(parent: int, rank: int) -> int | None:
    """The torchrun worker process of `rank` (a child of the torchrun agent)."""
    for d in Path("/proc").iterdir():
        try:
            if not d.name.isdigit() or f"PPid:\t{parent}\n" not in (d / "status").read_text():
                continue
            if f"RANK={rank}".encode() in (d / "environ").read_bytes().split(b"\0"):
                return int(d.name)
        except OSError:
            continue
    return None


def test_rank_killed_mid_way_then_rerun_gives_the_same_store(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=16, val_per_class=0, test=0)
    cache = tmp_path / "ranks"
    proc = subprocess.Popen(_torchrun_cmd(2, root, cache, VIT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(cache.glob("*/*/train-*.h5")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        pid = _worker_pid(proc.pid, 1) or _worker_pid(proc.pid, 0)  # rank 1, or rank 0 if 1 already finished
        assert pid is not None and proc.poll() is None, "the run ended before a rank could be killed"
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=60) != 0  # torchrun tears the other rank down too
    finally:
        proc.kill()
        proc.wait()
    assert not list(cache.glob("*/*/manifest.json"))  # nobody merged: the set is not complete
    kept = len(list(cache.glob("*/*/train-*.h5")))
    res = _torchrun(2, root, cache, VIT)
    reused = int(res.stdout.split("│ train │")[1].split("│")[2])
    assert reused >= 2 and kept >= 1  # finished shards were kept, not recomputed
    _assert_same(_store(cache), _reference(root, tmp_path / "one", VIT))


# --- --shard I/N and merge ------------------------------------------------------------------------


def test_shards_then_merge_equal_one_process(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=4, test=3)
    write_bad_images(root / "train_images" / "cat")
    cache = str(tmp_path / "shards")
    names = ("--model", "pixels", "--data", str(root), "--cache", cache)
    res = _cli("extract", *names, *CLI_OPTS, "--shard", "0/2")
    assert res.exit_code == 0 and "featstore merge --model pixels" in res.output, res.output
    assert not list_feature_sets(cache)  # a worker never writes the manifest
    res = _cli("merge", *names)
    assert res.exit_code == 1 and "images have no stored vector yet" in res.output
    assert "featstore extract --model pixels" in res.output
    res = _cli("extract", *names, *CLI_OPTS, "--shard", "1/2")
    assert res.exit_code == 0, res.output
    res = _cli("merge", *names)
    assert res.exit_code == 0, res.output
    ref = tmp_path / "one"
    extract(model="pixels", data=root, cache=ref, options=OPTS)
    _assert_same(_store(Path(cache)), _store(ref))
    (sharded,), (single,) = list_feature_sets(cache), list_feature_sets(ref)
    assert sharded.failures() == single.failures() and len(sharded.failures()) > 5  # failures of both ranks


def test_plain_extract_completes_a_sharded_set_without_rereading(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=4, test=0)
    cache = tmp_path / "c"
    first = extract(model="pixels", data=root, cache=cache, options=OPTS, rank=Rank(1, 3))
    loaded: list[str] = []
    real = featstore.job.make_loader
    monkeypatch.setattr(featstore.job, "make_loader",
                        lambda work, **kw: loaded.extend(i.id for i in work.items) or real(work, **kw))
    rep = extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert [r.reused for r in rep.splits] == [r.extracted for r in first.splits]  # the worker's third is kept
    assert [r.extracted for r in rep.splits] == [r.images - f.extracted for r, f in zip(rep.splits, first.splits)]
    assert len(loaded) == sum(r.extracted for r in rep.splits)  # the part's stat rows spared re-reading the rest
    extract(model="pixels", data=root, cache=tmp_path / "one", options=OPTS)
    _assert_same(_store(cache), _store(tmp_path / "one"))


def test_killed_worker_then_other_rank_count_has_no_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker of 3 dies (its buffer and part are lost, its shards stay); 2 workers and a merge finish the set."""
    root = write_folder_dataset(tmp_path / "data", per_class=6, test=0)
    cache = tmp_path / "c"

    def killed(self, *exc):  # what SIGKILL leaves: finished shards, no part, no flush
        self._lock.release()

    class Die:
        calls = 0

        def start(self, split, total): ...
        def end(self): ...

        def advance(self, n):
            Die.calls += 1
            if Die.calls > 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(FeatureSetWriter, "__exit__", killed)
    with pytest.raises(KeyboardInterrupt):
        extract(model="pixels", data=root, cache=cache, options=OPTS, rank=Rank(0, 3), progress=Die())
    monkeypatch.undo()
    partial = merge(model="pixels", data=root, cache=cache)  # merge trusts the dead worker's shards by re-hashing
    assert partial.splits[0].hashed > 0 and partial.missing
    shown = _cli("info", "pixels", "--cache", str(cache))
    assert shown.exit_code == 0 and "no vector yet" in shown.output
    n_missing = sum(1 for m in partial.missing if m["split"] == "train")
    assert list_feature_sets(cache)[0].missing("train") == n_missing > 0
    assert "missing" in _cli("ls", "--cache", str(cache)).output
    for i in range(2):
        extract(model="pixels", data=root, cache=cache, options=OPTS, rank=Rank(i, 2))
    assert not merge(model="pixels", data=root, cache=cache).missing
    extract(model="pixels", data=root, cache=tmp_path / "one", options=OPTS)
    _assert_same(_store(cache), _store(tmp_path / "one"))
    again = extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert sum(r.extracted for r in again.splits) == 0  # parts + index say everything is stored


def test_merge_errors(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2, test=0)
    res = _cli("merge", "--model", "pixels", "--data", str(root), "--cache", str(tmp_path / "empty"))
    assert res.exit_code == 1 and "nothing to merge" in res.output
    for p in ("fp32", "bf16"):
        extract(model="pixels", data=root, cache=tmp_path / "c", rank=Rank(0, 2),
                options=ExtractOptions(device="cpu", precision=p, workers=0))
    res = _cli("merge", "--model", "pixels", "--data", str(root), "--cache", str(tmp_path / "c"))
    assert res.exit_code == 1 and "choose one with --precision" in res.output
    res = _cli("merge", "--model", "pixels", "--data", str(root), "--cache", str(tmp_path / "c"), "--precision", "bf16")
    assert res.exit_code == 1 and "have no stored vector yet" in res.output  # shard 1/2 never ran


def test_merge_trusts_what_workers_report_over_a_stale_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared filesystem's listing can lag behind another node's renames: merge opens reported files by name."""
    from featstore.merge import merge_set as _merge
    from featstore.setdef import define_sets

    root = write_folder_dataset(tmp_path / "data", per_class=3, test=2)
    cache = tmp_path / "cache"
    opts = ExtractOptions(device="cpu", batch_size=2, workers=0, shard_rows=4)
    reps = [extract(model="pixels", data=root, cache=cache, options=opts, rank=Rank(i, 2)) for i in range(2)]
    reported = [n for r in reps for n in r.written[r.key]]
    hidden = set(reps[1].written[reps[1].key])
    assert any(n.startswith("part-") for n in hidden) and any(n.startswith("train-") for n in hidden)
    listing = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: (p for p in listing(self) if p.name not in hidden))
    (fs,) = define_sets(model="pixels", data=root, cache=cache, weights=None, random_weights=False, splits=None,
                        name=None, precision="fp32")
    stale = _merge(fs, wait=False, note={})
    assert sum(s.missing for s in stale.splits) > 0  # what a listing-based merge reports: rank 1's images missing
    merged = _merge(fs, wait=False, note={}, reported=reported)
    assert sum(s.missing for s in merged.splits) == 0
    assert sum(s.stored for s in merged.splits) == sum(r.images for rep in reps for r in rep.splits)
