"""Kills on purpose: SIGKILL at seeded points, SIGTERM, flush by age, compaction interrupted half-way.

The extraction runs in a forked child (no interpreter start-up per case); the parent kills it at a point
chosen by the seed, reruns the extraction and compares the store with a clean run."""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from corpus import assert_same_store, store_contents, write_folder_dataset
from featstore.extract import ExtractOptions, extract
from featstore.store import FeatureSetWriter, open_feature_set

ROWS = 8  # images per class in train: 24 train, 6 val, 4 test


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("clean")
    root = write_folder_dataset(base / "data", per_class=ROWS, val_per_class=2)
    extract(model="pixels", data=root, cache=base / "cache", options=ExtractOptions(device="cpu", workers=0))
    return root, store_contents(base / "cache")



def _child(args: list[str], report_fd: int) -> None:
    """Run `featstore extract ARGS` in this (forked) process; after every row handed to the writer, write the
    number handed so far; exit with the command's exit code."""
    from featstore.cli import featstore_app

    torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork: a parallel op would hang
    original, handed = FeatureSetWriter.add, [0]

    def add(self, split, ids, *rest):
        original(self, split, ids, *rest)
        handed[0] += len(ids)
        os.write(report_fd, f"{handed[0]}\n".encode())

    FeatureSetWriter.add = add
    code = 1
    try:
        featstore_app(args, standalone_mode=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        os._exit(code)


def _run_until(args: list[str], *, rows: int, sig: int, delay_s: float = 0.0) -> tuple[int, int]:
    """Fork an extraction, send `sig` once it has handed `rows` rows to the writer (plus `delay_s`).
    Returns (rows handed when the signal was sent, exit status)."""
    r, w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(args, w)
    os.close(w)
    handed, buf = 0, b""
    with os.fdopen(r, "rb", buffering=0) as pipe:
        while handed < rows:
            if not select.select([pipe], [], [], 120)[0]:  # a hung child fails the test instead of hanging it
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked extraction stopped reporting")
            chunk = pipe.read(64)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            handed = int(done[-1]) if done else handed
        if delay_s:
            import time

            time.sleep(delay_s)
        os.kill(pid, sig)
        _, status = os.waitpid(pid, 0)
    return handed, os.waitstatus_to_exitcode(status)


def _args(root: Path, cache: Path, *extra: str) -> list[str]:
    return ["extract", "--model", "pixels", "--data", str(root), "--cache", str(cache), "--workers", "0",
            "--batch-size", "2", *extra]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_seeded_points_loses_at_most_the_unpublished_batch(tmp_path: Path, clean, seed: int) -> None:
    """--flush-seconds 0 publishes every batch: what was handed to the writer before the kill survives."""
    root, ref = clean
    rng = random.Random(seed)
    cache = tmp_path / "cache"
    handed, code = _run_until(_args(root, cache, "--flush-seconds", "0"), rows=rng.randrange(2, 22, 2),
                              sig=signal.SIGKILL, delay_s=rng.uniform(0, 0.02))
    assert code == -signal.SIGKILL
    rep = extract(model="pixels", data=root, cache=cache, options=ExtractOptions(device="cpu", workers=0))
    train = rep.splits[0]
    assert train.reused >= handed - 2  # at most the batch being written when the kill came
    assert train.reused + train.extracted == 3 * ROWS
    assert_same_store(store_contents(cache), ref)
    fs = open_feature_set("pixels", cache=cache)
    assert len(fs.manifest["splits"]["train"]["shards"]) == 1  # the many one-batch shards were compacted
    assert not list(fs.folder.glob(".*tmp*"))  # the killed writer's temp files are gone


def test_sigterm_flushes_what_is_buffered_and_exits(tmp_path: Path, clean) -> None:
    """No shard is due (huge row and time bounds), yet nothing handed to the writer is lost on SIGTERM."""
    root, ref = clean
    cache = tmp_path / "cache"
    handed, code = _run_until(_args(root, cache, "--flush-seconds", "3600", "--shard-rows", "1000"), rows=10,
                              sig=signal.SIGTERM)
    assert code == 143
    rep = extract(model="pixels", data=root, cache=cache, options=ExtractOptions(device="cpu", workers=0))
    assert rep.splits[0].reused >= handed >= 10
    assert_same_store(store_contents(cache), ref)


def test_shard_in_progress_is_published_by_age(tmp_path: Path, clean, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = clean
    clock = [0.0]
    monkeypatch.setattr("featstore.store.writer.time.monotonic", lambda: clock[0])
    published: list[int] = []
    original = FeatureSetWriter.flush

    def flush(self, split):
        n = len(self._buf.get(split, []))
        if n:
            published.append(n)
        original(self, split)

    def add(self, split, *rest):
        clock[0] += 35.0  # every batch takes 35 s: the buffer turns 60 s old at its third batch
        FeatureSetWriter._add(self, split, *rest)

    monkeypatch.setattr(FeatureSetWriter, "_add", FeatureSetWriter.add, raising=False)
    monkeypatch.setattr(FeatureSetWriter, "add", add)
    monkeypatch.setattr(FeatureSetWriter, "flush", flush)
    extract(model="pixels", data=root, cache=tmp_path / "cache", splits=["train"],
            options=ExtractOptions(device="cpu", workers=0, batch_size=2))
    assert published[:4] == [6, 6, 6, 6]  # 3 batches of 2 rows, far below the 4096-row bound


def test_compaction_interrupted_before_deleting_old_shards(tmp_path: Path, clean) -> None:
    """A kill between listing the compacted shard and deleting the small ones leaves duplicates: read once,
    folded away by the next compaction."""
    root, ref = clean
    cache = tmp_path / "cache"
    opts = ExtractOptions(device="cpu", workers=0, batch_size=2, flush_s=0.0)
    saved = tmp_path / "small"
    original = FeatureSetWriter.compact

    def compact(self, split):
        if split == "train":
            shutil.copytree(self.folder, saved, ignore=shutil.ignore_patterns("manifest.json", "index-*", ".*"))
        return original(self, split)

    FeatureSetWriter.compact = compact
    try:
        extract(model="pixels", data=root, cache=cache, options=opts)
    finally:
        FeatureSetWriter.compact = original
    folder = open_feature_set("pixels", cache=cache).folder
    for p in saved.glob("train-*.h5"):  # what the kill left: the small shards are back beside the compacted one
        if not (folder / p.name).exists():
            shutil.copy(p, folder / p.name)
    rep = extract(model="pixels", data=root, cache=cache, options=opts)
    assert rep.splits[0].extracted == 0
    assert_same_store(store_contents(cache), ref)
    shards = open_feature_set("pixels", cache=cache).manifest["splits"]["train"]["shards"]
    assert len(shards) == 1 and len(list(folder.glob("train-*.h5"))) == 1


def test_temps_are_kept_while_a_worker_lock_is_held(tmp_path: Path) -> None:
    """A --shard worker (maybe on another host) may be writing its temp: only dead local writers' old temps go."""
    import socket
    import subprocess
    import time

    from filelock import FileLock

    from featstore.store.shards import STALE_TEMP_S, remove_stale_temps

    gone = subprocess.Popen(["true"])
    gone.wait()
    host, old = socket.gethostname(), time.time() - 2 * STALE_TEMP_S
    names = {"dead": f".tmp@{host}@{gone.pid}@deadbeef@train.h5", "other host": f".tmp@x-{host}@1@feedface@train.h5",
             "fresh": f".tmp@{host}@{gone.pid}@c0ffee00@val.h5"}
    for k, n in names.items():
        (tmp_path / n).write_bytes(b"half")
        if k != "fresh":
            os.utime(tmp_path / n, (old, old))
    with FileLock(str(tmp_path / ".lock-rank-0-of-2")):
        from featstore.store.writer import busy_worker_locks

        assert busy_worker_locks(tmp_path)
        remove_stale_temps(tmp_path, sole_writer=False)
    assert sorted(p.name for p in tmp_path.glob(".tmp@*")) == sorted([names["other host"], names["fresh"]])


def test_compact_command_folds_small_shards(tmp_path: Path, clean, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from featstore.cli import featstore_app

    root, ref = clean
    cache = tmp_path / "cache"
    monkeypatch.setattr(FeatureSetWriter, "compact", lambda self, split: (0, 0))  # a set written before compaction
    extract(model="pixels", data=root, cache=cache, options=ExtractOptions(device="cpu", workers=0, batch_size=4,
                                                                           flush_s=0.0))
    monkeypatch.undo()
    assert len(open_feature_set("pixels", cache=cache).manifest["splits"]["train"]["shards"]) == 6
    res = CliRunner().invoke(featstore_app, ["compact", "pixels", "--cache", str(cache)])
    assert res.exit_code == 0 and "train: 6 shards -> 1" in res.output, res.output
    assert_same_store(store_contents(cache), ref)
