"""featstore rm / gc, probes rm, readable `probes runs`, evaluate across datasets (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from featstore.cli import featstore_app
from probes.cli import probes_app
from featstore.importer import import_arrays
from featstore.store import list_feature_sets
from probes.runs import list_runs

runner = CliRunner()


def _set(tmp: Path, name: str, classes: list[str], *, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", 45), ("val", 30)):
        y = np.arange(n) % len(classes)
        np.savez(tmp / f"{name}_{split}.npz", features=rng.normal(size=(n, 5)).astype(np.float32) + 3 * y[:, None],
                 labels=y, ids=np.array([f"{split}{i}.png" for i in range(n)]))
        files[split] = tmp / f"{name}_{split}.npz"
    return import_arrays(name, files, cache=tmp / "cache", classes=classes)


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    _set(tmp_path, "birds", ["owl", "hawk", "wren"], seed=0)
    _set(tmp_path, "cars", ["audi", "fiat", "kia"], seed=1)
    for feats, extra in (("birds", []), ("birds", ["--cv", "3"]), ("cars", [])):
        res = runner.invoke(probes_app, ["fit", "-f", feats, *extra, "--cache", str(tmp_path / "cache"),
                                         "--runs", str(tmp_path / "runs")])
        assert res.exit_code == 0, res.output
    return tmp_path


def _p(store: Path, *args: str):
    return runner.invoke(probes_app, [*args, "--runs", str(store / "runs")], env={"COLUMNS": "300"})


def test_runs_table_columns_best_marker_sort_and_filters(store: Path) -> None:
    res = _p(store, "runs", "--sort", "score")
    assert res.exit_code == 0, res.output
    from probes.runs import run_row

    rows = [run_row(r) for r in list_runs(store / "runs")]
    assert {(r["dataset"], r["selection"]) for r in rows} == {("birds", "val"), ("birds", "K-fold OOF, refit"), ("cars", "val")}
    assert all(r["features"].startswith(r["dataset"] + " (") and "C=" in r["params"] and r["seed"] == 0 for r in rows)
    assert res.output.count("*") >= 2 and "3 runs" in res.output  # one best per dataset, plus the footnote
    res = _p(store, "runs", "--dataset", "cars")
    assert "cars" in res.output and "1 runs," in res.output


def test_evaluate_refuses_two_datasets_and_a_val_cv_mix(store: Path) -> None:
    runs = {(r.config["features"][0]["dataset"], r.has("val")): r for r in list_runs(store / "runs")}
    res = _p(store, "evaluate", runs[("birds", True)].id, runs[("cars", True)].id)
    assert res.exit_code == 1 and "different datasets" in res.output
    res = _p(store, "evaluate", runs[("birds", True)].id, runs[("birds", False)].id)
    assert res.exit_code == 1 and "K-fold CV" in res.output and "--cv K" in res.output
    res = _p(store, "evaluate", runs[("cars", True)].id)
    assert res.exit_code == 0 and ("audi" in res.output or "kia" in res.output or "fiat" in res.output)


def test_probes_rm_and_featstore_rm_and_gc(store: Path) -> None:
    cache = str(store / "cache")
    cars = next(r for r in list_runs(store / "runs") if r.config["features"][0]["dataset"] == "cars")
    res = _p(store, "rm", cars.id)
    assert res.exit_code == 0 and f"removed {cars.id}" in res.output and not cars.folder.exists()
    birds = next(s for s in list_feature_sets(store / "cache") if s.encoder == "birds")
    (birds.folder / "quarantine").mkdir()
    (birds.folder / "quarantine" / "bad.h5").write_bytes(b"x" * 1000)
    res = runner.invoke(featstore_app, ["gc", "--dry-run", "--unused", "--runs", str(store / "runs"), "--cache", cache])
    assert res.exit_code == 0 and "would remove" in res.output and "used by no run" in res.output
    assert "quarantine" in res.output and len(list_feature_sets(store / "cache")) == 2  # dry: nothing removed
    res = runner.invoke(featstore_app, ["gc", "--unused", "--runs", str(store / "runs"), "--cache", cache])
    assert res.exit_code == 0 and not (birds.folder / "quarantine").exists()
    assert [s.encoder for s in list_feature_sets(store / "cache")] == ["birds"]  # cars: no run left uses it
    res = runner.invoke(featstore_app, ["rm", "birds", "--cache", cache])
    assert res.exit_code == 0 and "removed birds" in res.output and not list_feature_sets(store / "cache")
    res = runner.invoke(featstore_app, ["ls", "--cache", cache])
    assert res.exit_code == 0


def test_rm_and_gc_never_remove_a_set_being_written(store: Path) -> None:
    """An extraction (main lock) or a torchrun worker (rank lock) writing the set: rm refuses naming
    it, gc --unused keeps it and says so, and the set is intact afterwards."""
    from filelock import FileLock

    cache = str(store / "cache")
    cars = next(s for s in list_feature_sets(store / "cache") if s.encoder == "cars")
    for lock_name in (".lock", ".lock-rank-1-of-2"):
        with FileLock(str(cars.folder / lock_name)):
            res = runner.invoke(featstore_app, ["rm", "cars", "--cache", cache])
            assert res.exit_code == 1 and "being written right now" in res.output and "remove it when" in res.output
            assert cars.folder.is_dir()
            for run in [r for r in list_runs(store / "runs") if r.config["features"][0]["dataset"] == "cars"]:
                assert _p(store, "rm", run.id).exit_code == 0
            res = runner.invoke(featstore_app, ["gc", "--unused", "--runs", str(store / "runs"), "--cache", cache])
            assert res.exit_code == 0 and "kept" in res.output and "being written" in res.output
            assert (cars.folder / "manifest.json").is_file()
    res = runner.invoke(featstore_app, ["rm", "cars", "--cache", cache])  # the writer has ended
    assert res.exit_code == 0 and not cars.folder.exists()
