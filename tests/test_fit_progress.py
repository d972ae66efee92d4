"""`probes fit` reports its stages (fold k of K, epoch e of E, configuration i of N) to a reporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featstore.importer import import_arrays
from probes.progress import reporting, stage
from probes.train import FitRequest, fit_run


class Recorder:
    """A reporter that keeps every stage with its total and the steps it advanced."""

    def __init__(self) -> None:
        self.stages: list[dict] = []

    def start(self, name, total):
        self.stages.append({"name": name, "total": total, "done": 0, "notes": [], "open": True})
        return len(self.stages) - 1

    def advance(self, task, n, note):
        self.stages[task]["done"] += n
        self.stages[task]["notes"].append(note)

    def stop(self, task):
        self.stages[task]["open"] = False

    def named(self, prefix: str) -> list[dict]:
        return [s for s in self.stages if s["name"].startswith(prefix)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("progress")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 2
    files = {}
    for split, n in (("train", 120), ("val", 40), ("test", 12)):
        y = np.arange(n) % 4
        np.savez(tmp / f"{split}.npz", features=(centres[y] + rng.normal(size=(n, 16))).astype(np.float32), labels=y)
        files[split] = tmp / f"{split}.npz"
    import_arrays("toy", files, cache=tmp / "cache", classes=["a", "b", "c", "d"])
    return tmp / "cache"


def _fit(cache: Path, tmp_path: Path, **req):
    rec = Recorder()
    with reporting(rec):
        res = fit_run(FitRequest(features=("toy",), **req), cache=cache, runs=tmp_path / "runs")
    assert not [s for s in rec.stages if s["open"]], "every stage is closed when the fit ends"
    return rec, res


def test_cv_reports_each_fold_and_each_epoch(cache, tmp_path):
    rec, res = _fit(cache, tmp_path, head="mlp", cv=3, params={"epochs": 3, "hidden": 8})
    folds = rec.named("fold")
    assert [(s["total"], s["done"]) for s in folds] == [(3, 3), (3, 3)]  # selection, then out-of-fold scores
    epochs = rec.named("epoch")
    assert epochs[0]["total"] == 3 and 1 <= epochs[0]["done"] <= 3  # selection: up to 3 epochs
    assert all(s["done"] <= s["total"] for s in epochs)  # refits run the chosen count (0: the residual's linear part)
    assert rec.named("refit on all labeled images")
    assert np.isfinite(res.run.metrics["val_top1"])


def test_logistic_search_and_grid_report_their_points(cache, tmp_path):
    rec, _ = _fit(cache, tmp_path)  # the adaptive search: points without a known total
    (search,) = rec.named("search point")
    assert search["total"] is None and search["done"] >= 1 and "val top-1" in search["notes"][-1]
    rec, _ = _fit(cache, tmp_path, sweep=True, grid={"C": [0.1, 1.0], "shrink": [1.0, 10.0, 100.0]})
    configs = rec.named("configuration")
    assert [(s["total"], s["done"]) for s in configs][-1:] == [(6, 6)]


def test_sweep_by_clones_reports_configurations(cache, tmp_path):
    rec, _ = _fit(cache, tmp_path, head="knn", sweep=True, grid={"k": [1, 3, 5]})
    assert [(s["total"], s["done"]) for s in rec.named("configuration")] == [(3, 3)]


def test_without_a_reporter_stages_do_nothing():
    with stage("fold", 3) as s:
        s.advance(note="nothing listens")  # no reporter installed: a no-op, no error
