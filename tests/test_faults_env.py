"""Faults of the environment on purpose: a disk that fills up, read-only mounts, files where folders belong.

Each must end in one line naming the path, exit 1, the store still consistent, and no temp file left.
The disk-full and read-only cases mount a small tmpfs; they are skipped (with the reason) where mounting
is not allowed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from featstore.cli import featstore_app
from probes.cli import probes_app
from featstore.cli.boundary import environment_message
from corpus import write_folder_dataset
from featstore.extract import ExtractOptions, extract
from featstore.store import open_feature_set

runner = CliRunner()
OPTS = ExtractOptions(device="cpu", workers=0, batch_size=4, shard_rows=8)


@pytest.fixture()
def tmpfs(tmp_path: Path):
    """A 256 KiB tmpfs; yields (mount point, remount(ro: bool))."""
    point = tmp_path / "mnt"
    point.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not root'})")

    def remount(ro: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if ro else 'rw'}", str(point)], check=True)

    yield point, remount
    subprocess.run(["umount", "-l", str(point)], check=False)


def _cli_forked(*args: str, stderr: Path) -> int:
    """The CLI in a forked child: a crash (segfault, abort) shows as a negative status, not a dead pytest."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork: a parallel op would hang
            sys.stderr = sys.stdout = open(stderr, "w")
            featstore_app(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked CLI hung")


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith((".tmp", ".manifest", ".index")))


def test_disk_full_is_one_line_and_leaves_a_consistent_store(tmp_path: Path, tmpfs) -> None:
    point, _ = tmpfs
    root = write_folder_dataset(tmp_path / "data", per_class=50, val_per_class=0, test=0)  # 150 x 2 KB vectors > 256 KB
    log = tmp_path / "stderr"
    code = _cli_forked("extract", "--model", "pixels", "--data", str(root), "--cache", str(point / "c"),
                       "--workers", "0", "--shard-rows", "16", stderr=log)
    text = log.read_text()
    assert code == 1, text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: no space left on device: {point}"), text
    assert "Traceback" not in text and "a bug" not in text
    folder = next((point / "c").glob("*/*"))
    assert _litter(folder) == []
    # nothing lost: the shards that fit are adopted by the next run on a disk with room
    cache = tmp_path / "roomy"
    os.system(f"cp -a {point / 'c'} {cache}")
    rep = extract(model="pixels", data=root, cache=cache, options=OPTS)
    assert rep.splits[0].reused >= 16
    assert len(open_feature_set("pixels", cache=cache).load("train")) == 150


def test_read_only_cache_is_one_line(tmp_path: Path, tmpfs) -> None:
    point, remount = tmpfs
    root = write_folder_dataset(tmp_path / "data", per_class=2)
    extract(model="pixels", data=root, cache=point / "c", options=OPTS)
    remount(True)
    args = ["--model", "pixels", "--data", str(root), "--workers", "0"]
    res = runner.invoke(featstore_app, ["extract", *args, "--cache", str(point / "c")])
    assert res.exit_code == 0 and "up to date" in res.output  # nothing to write: a read-only store is fine
    os.utime(next(root.rglob("*.png")), ns=(10**18, 10**18))  # now the rerun has to write
    for cache in (point / "c", point / "new"):  # an existing set, and a store not created yet
        res = runner.invoke(featstore_app, ["extract", *args, "--cache", str(cache)])
        assert res.exit_code == 1 and "error: read-only file system: " + str(point) in res.output.replace("\n", "")
    res = runner.invoke(featstore_app, ["verify", "--cache", str(point / "c")])  # checking needs no write
    assert res.exit_code == 0, res.output
    assert len(open_feature_set("pixels", cache=point / "c").load("train")) == 6


def test_read_only_runs_folder_is_one_line(tmp_path: Path, tmpfs) -> None:
    from probes.runs import save_run

    point, remount = tmpfs
    remount(True)
    with pytest.raises(OSError) as caught:
        save_run(point / "runs", name="x", head_state={}, config={}, metrics={}, predictions={})
    assert environment_message(caught.value) == f"read-only file system: {point / 'runs'}"


@pytest.mark.parametrize("option", ["--cache", "--runs"])
def test_a_file_given_where_a_folder_is_expected(tmp_path: Path, option: str) -> None:
    file = tmp_path / "afile"
    file.write_text("x")
    app, cmd = (featstore_app, ["ls"]) if option == "--cache" else (probes_app, ["runs"])
    res = runner.invoke(app, [*cmd, option, str(file)])
    assert res.exit_code == 1 and f"{file} is a file; a folder is expected" in res.output.replace("\n", "")


def test_errno_messages_name_the_path() -> None:
    import errno

    assert environment_message(OSError(errno.ENOSPC, "No space left", "/x/y")) == "no space left on device: /x/y"
    assert environment_message(IsADirectoryError(errno.EISDIR, "Is a directory", "/s.csv")) == \
        "is a folder, expected a file: /s.csv"
    wrapped = RuntimeError("boom")
    wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system", "/ro")
    assert environment_message(wrapped) == "read-only file system: /ro"


def test_empty_env_vars_mean_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featstore.store import default_cache
    from probes.runs import default_runs

    monkeypatch.setenv("FEATSTORE_CACHE", "")
    monkeypatch.setenv("PROBES_RUNS", "")
    assert default_cache() == Path("cache") and default_runs() == Path("runs")


def test_probes_fit_honours_probes_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=4)
    extract(model="pixels", data=root, cache=tmp_path / "c", options=OPTS)
    runs = tmp_path / f"runs-{uuid.uuid4().hex[:4]}"
    monkeypatch.setenv("PROBES_RUNS", str(runs))
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(probes_app, ["fit", "--features", "pixels", "--cache", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert len(list(runs.iterdir())) == 1 and not (tmp_path / "runs").exists()


def test_sample_saved_with_a_bom_is_read(tmp_path: Path) -> None:
    from probes.sample import read_sample

    sample = tmp_path / "sample.csv"
    sample.write_bytes("\ufeffId,Category\nb,0\na,0\n".encode())
    assert read_sample(sample).header == ["Id", "Category"] and read_sample(sample).rows == [["b", "0"], ["a", "0"]]


def test_temp_folders_of_killed_fits_are_cleaned_by_the_next_save(tmp_path: Path) -> None:
    from probes.runs import save_run

    runs = tmp_path / "runs"
    old, fresh = runs / ".tmp-deadbeef", runs / ".tmp-0badf00d"
    for p in (old, fresh):
        p.mkdir(parents=True)
    os.utime(old, (1, 1))
    save_run(runs, name="x", head_state={}, config={}, metrics={}, predictions={})
    assert not old.exists() and fresh.exists()  # a fresh one may be a fit saving right now
