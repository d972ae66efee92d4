"""A no-op rerun answers from a scan and the indexes, without importing torch; any change takes the full path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from featstore.cli import featstore_app
from corpus import write_bad_images, write_folder_dataset

ROOT = Path(__file__).resolve().parent.parent


def _extract(root: Path, cache: Path, *extra: str) -> str:
    res = CliRunner().invoke(featstore_app, ["extract", "--model", "pixels", "--data", str(root), "--cache", str(cache),
                                             "--workers", "0", *extra])
    assert res.exit_code == 0, res.output
    return res.output


def test_noop_rerun_imports_no_torch(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2, test=1)
    cache = tmp_path / "cache"
    assert "up to date" not in _extract(root, cache)
    probe = ("import sys\nfrom featstore.cli import featstore_app\n"
             "try:\n    featstore_app(sys.argv[1:], prog_name='featstore')\nexcept SystemExit as e:\n    assert not e.code\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    res = subprocess.run([sys.executable, "-c", probe, "extract", "--model", "pixels", "--data", str(root),
                          "--cache", str(cache), "--workers", "0"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert "up to date: all" in res.stdout and res.stdout.strip().endswith("NO-TORCH")


def test_any_change_takes_the_full_path(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2, test=1)
    cache = tmp_path / "cache"
    _extract(root, cache)
    assert "up to date" in _extract(root, cache)
    img = next((root / "train_images").rglob("*.png"))
    os.utime(img, ns=(10**18, 10**18))  # touched: the full path hashes it (and finds it stored)
    assert "up to date" not in _extract(root, cache)
    assert "up to date" in _extract(root, cache)
    assert "up to date" not in _extract(root, cache, "--splits", "train")  # another request: its own record
    (folder,) = (cache / "pixels").iterdir()
    shard = next(folder.glob("train-*.h5"))
    shard.unlink()  # a lost shard: the full path recomputes its rows
    assert "up to date" not in _extract(root, cache)
    assert "up to date" in _extract(root, cache)


def test_a_run_with_failures_is_not_recorded_as_complete(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=2, test=0)
    write_bad_images(root / "train_images" / "cat")
    cache = tmp_path / "cache"
    _extract(root, cache)
    assert "up to date" not in _extract(root, cache)  # failed images are retried by a rerun, as before
    assert not list((cache / ".requests").glob("*.json")) if (cache / ".requests").exists() else True
    assert json.loads((next((cache / "pixels").iterdir()) / "manifest.json").read_text())["splits"]["train"]["failures"]
