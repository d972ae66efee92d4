"""A scan that lists folders in parallel gives exactly the serial scan's dataset."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from corpus import write_folder_dataset
from featstore import dirscan
from featstore.datasets import scan_dataset


def _tangled(root: Path) -> Path:
    """Many classes, nested sub-folders, hidden folders, a link loop, a link into another class, a dangling link."""
    root = write_folder_dataset(root, classes=[f"c{i:02d}" for i in range(12)], per_class=2, test=3)
    train = root / "train_images"
    for i in range(12):
        deep = train / f"c{i:02d}" / "a" / "b"
        deep.mkdir(parents=True)
        (deep / f"deep{i}.png").write_bytes((train / f"c{i:02d}" / f"c{i:02d}_000.png").read_bytes())
        (train / f"c{i:02d}" / ".cache").mkdir()
    os.symlink(train / "c00", train / "c00" / "a" / "loop")
    os.symlink(train / "c01", train / "c02" / "other_class")
    os.symlink(train / "nowhere.png", train / "c03" / "dangling.png")
    (root / "test_images" / "mistery_category" / "sub").mkdir()
    (root / "test_images" / "mistery_category" / "sub" / "t.png").write_bytes(b"x")
    return root


def test_parallel_scan_equals_serial_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tangled(tmp_path / "data")
    serial = scan_dataset(root, threads=1)
    threads: set[str] = set()
    real = dirscan.read_dir
    monkeypatch.setattr(dirscan, "read_dir", lambda folder: threads.add(threading.current_thread().name) or real(folder))
    parallel = scan_dataset(root, threads=8)
    assert len(threads) > 1 and all(t.startswith("scan") for t in threads)  # the folders were read by the pool
    assert parallel == serial
    assert any(i.problem for i in serial.splits["train"]) and serial.hidden  # the tangles were met
    assert len({i.id for i in serial.splits["train"]}) == len(serial.splits["train"])


def test_scan_threads_from_the_environment_else_from_the_filesystem(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATSTORE_SCAN_THREADS", raising=False)
    monkeypatch.setattr(dirscan, "is_remote", lambda path: str(path).startswith("/mnt/nfs"))
    assert dirscan.scan_threads(root="/mnt/nfs/imagenet") == dirscan.AUTO_THREADS
    assert dirscan.scan_threads(root=tmp_path) == 1 and dirscan.scan_threads(3, root=tmp_path) == 3
    monkeypatch.setenv("FEATSTORE_SCAN_THREADS", "0")
    assert dirscan.scan_threads(root="/mnt/nfs/imagenet") == 1 and dirscan.scan_threads(4) == 4


def test_network_filesystems_from_the_mount_table(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda1 / ext4 rw 0 0\n"
                      "server:/export /mnt/data nfs4 rw,relatime 0 0\n"
                      "/dev/vdb /mnt/data/local\\040disk xfs rw 0 0\n"
                      "s3fs /mnt/bucket fuse.s3fs rw 0 0\n")
    remote = lambda p: dirscan.is_remote(p, mounts=str(mounts))  # noqa: E731
    assert remote("/mnt/data/imagenet/train") and remote("/mnt/bucket/x") and remote("/mnt/data")
    assert not remote("/home/me/data") and not remote("/mnt/data/local disk/imgs") and not remote("/mnt/database")


def test_threaded_stats_equal_os_stat(tmp_path: Path) -> None:
    paths = []
    for k in range(7):
        p = tmp_path / f"f{k}"
        p.write_bytes(b"x" * k)
        os.utime(p, ns=(1, 10**9 + k))
        paths.append(str(p))
    size, mtime = dirscan.stat_files(paths, threads=3, chunk=2)
    assert size.tolist() == list(range(7)) and mtime.tolist() == [10**9 + k for k in range(7)]
    with pytest.raises(FileNotFoundError):
        dirscan.stat_files([*paths, str(tmp_path / "gone")], threads=3, chunk=2)
