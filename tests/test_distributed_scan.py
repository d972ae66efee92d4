"""Under torchrun rank 0 alone scans the dataset (folders or tars) and the other ranks receive its work list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus import write_folder_dataset
from featstore.extract import ExtractOptions, extract
from featstore.store import open_feature_set
from test_tars import _to_tars

TORCHRUN = Path(sys.executable).with_name("torchrun")
# The CLI, with every scan_dataset call of featstore.setdef (where a set is defined) logged by rank.
LOGGED = """import os, sys
import featstore.setdef as fx
real = fx.scan_dataset
def logged(*a, **k):
    with open(os.environ["SCAN_LOG"], "a") as f:
        f.write(os.environ.get("RANK", "-") + "\\n")
    return real(*a, **k)
fx.scan_dataset = logged
from featstore.cli import featstore_app
featstore_app(sys.argv[1:], prog_name="featstore")
"""


def _torchrun(tmp_path: Path, root: Path, cache: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    script, log = tmp_path / "logged_featstore.py", tmp_path / "scans.log"
    script.write_text(LOGGED)
    log.unlink(missing_ok=True)
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(script), "extract", "--model", "pixels",
           "--data", str(root), "--cache", str(cache), "--device", "cpu", "--batch-size", "2", "--workers", "0",
           "--shard-rows", "3"]
    import os

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "SCAN_LOG": str(log)})
    return res, log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("layout", ["folders", "tars"])
def test_rank_zero_scans_once_and_the_ranks_share_its_work_list(tmp_path: Path, layout: str) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=4, test=3)
    if layout == "tars":
        root = _to_tars(root, tmp_path / "tars", per_tar=2)
    res, scans = _torchrun(tmp_path, root, tmp_path / "ranks")
    assert res.returncode == 0, res.stdout + res.stderr
    assert scans == ["0"]  # rank 1 never walked the dataset
    extract(model="pixels", data=root, cache=tmp_path / "one", options=ExtractOptions(device="cpu", workers=0))
    ranks, one = open_feature_set("pixels", cache=tmp_path / "ranks"), open_feature_set("pixels", cache=tmp_path / "one")
    assert ranks.splits == one.splits
    for split in one.splits:
        a, b = ranks.load(split), one.load(split)
        assert list(a.ids) == list(b.ids) and a.labels.tolist() == b.labels.tolist()
        np.testing.assert_array_equal(a.features, b.features)


def test_a_scan_error_on_rank_zero_stops_every_rank_with_its_message(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res, scans = _torchrun(tmp_path, tmp_path / "empty", tmp_path / "cache")
    assert res.returncode != 0 and scans == ["0"]
    assert (res.stdout + res.stderr).count("no dataset layout found") == 2  # both ranks say why, neither hangs
