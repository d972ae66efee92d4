"""Probes plumbing without training: import, aligned loading, runs, metrics, plots, submissions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from featstore.errors import StoreError
from featstore.importer import import_arrays
from probes.data import ProbesError, load_features
from probes.evaluate import evaluate_runs
from probes.metrics import classification_metrics, expected_calibration_error
from probes.runs import Predictions, list_runs, resolve_run, save_run
from probes.submit import read_submission, write_submission
from probes.testsplit import TestSplit

CLASSES, FOLDERS = ["ant", "bee", "cat"], TestSplit("folders")


def _npz(path: Path, n: int, d: int, k: int, *, seed: int, ids: list[str] | None = None, labels: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {"features": rng.normal(size=(n, d)).astype(np.float32),
              "ids": np.array(ids or [f"img_{i:03d}.png" for i in range(n)])}
    if labels:
        arrays["labels"] = np.arange(n) % k
    np.savez(path, **arrays)
    return path


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    c = tmp_path / "cache"
    for name, d, seed in (("enc_a", 8, 0), ("enc_b", 4, 1)):
        import_arrays(name, {"train": _npz(tmp_path / f"{name}_tr.npz", 30, d, 3, seed=seed),
                             "val": _npz(tmp_path / f"{name}_va.npz", 9, d, 3, seed=seed + 10),
                             "test": _npz(tmp_path / f"{name}_te.npz", 6, d, 3, seed=seed + 20, labels=False)},
                      cache=c, classes=["ant", "bee", "cow"])
    return c


def test_import_and_concatenate(cache: Path, tmp_path: Path) -> None:
    feats = load_features(["enc_a", "enc_b"], cache=cache)
    assert feats.dim == 12 and feats.classes == ["ant", "bee", "cow"]
    train = feats.split("train")
    raw = np.load(tmp_path / "enc_a_tr.npz")
    np.testing.assert_allclose(train.features[:, :8], raw["features"], atol=5e-3)  # float16 in the store
    assert (feats.split("test").labels == -1).all()


def test_mismatched_sets_are_refused(cache: Path, tmp_path: Path) -> None:
    import_arrays("enc_c", {"train": _npz(tmp_path / "c.npz", 30, 4, 3, seed=5, ids=[f"other_{i}" for i in range(30)])},
                  cache=cache, classes=["ant", "bee", "cow"])
    with pytest.raises(ProbesError, match="hold different images"):
        load_features(["enc_a", "enc_c"], cache=cache)
    import_arrays("enc_d", {"train": _npz(tmp_path / "d.npz", 30, 4, 3, seed=6)}, cache=cache)
    with pytest.raises(ProbesError, match="class lists differ"):
        load_features(["enc_a", "enc_d"], cache=cache)
    import_arrays("enc_e", {"train": _npz(tmp_path / "e.npz", 30, 4, 3, seed=7)}, cache=cache,
                  classes=["ant", "bee", "cow"])
    with pytest.raises(ProbesError, match="split val is missing from enc_e"):
        load_features(["enc_a", "enc_e"], cache=cache)
    with pytest.raises(ProbesError, match="has no test split"):
        load_features(["enc_e"], cache=cache).split("test")
    with pytest.raises(StoreError, match="no feature set 'nope'"):
        load_features(["nope"], cache=cache)


def test_import_rejects_bad_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(StoreError, match="needs labels"):
        import_arrays("x", {"train": tmp_path / "x.npy"}, cache=tmp_path / "c")
    np.savez(tmp_path / "nan.npz", features=np.full((4, 2), np.nan, np.float32), labels=np.zeros(4, int))
    with pytest.raises(StoreError, match="NaN"):
        import_arrays("x", {"train": tmp_path / "nan.npz"}, cache=tmp_path / "c")


def _run(runs: Path, probs: np.ndarray, ids: list[str], labels: np.ndarray, *, test: np.ndarray | None = None, name="r"):
    preds = {"val": Predictions(np.array(ids, dtype=object), probs.astype(np.float32), labels)}
    if test is not None:
        preds["test"] = Predictions(np.array([f"mistery_category/{i:03d}.jpg" for i in range(len(test))], dtype=object),
                                    test.astype(np.float32), np.full(len(test), -1))
    return save_run(runs, name=name, head_state={"w": np.zeros((2, 2), np.float32)},
                    config={"classes": ["a", "b", "c"], "features": [], "head": "x"},
                    metrics={"val_top1": 0.0, "val_top5": 0.0}, predictions=preds)


def test_metrics_on_a_known_answer() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["top1"] == 0.75 and m["top5"] == 1.0
    assert m["per_class_acc"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["confused_pairs"] == [{"true": "b", "pred": "a", "count": 1}]
    assert expected_calibration_error(np.eye(3)[[0, 1, 2]], np.array([0, 1, 2])) == 0.0


def test_runs_evaluate_and_ensemble(tmp_path: Path) -> None:
    labels = np.array([0, 1, 2, 0])
    ids = ["a/1", "b/1", "c/1", "a/2"]
    r1 = _run(tmp_path / "runs", np.eye(3)[[0, 1, 1, 0]] * 0.8 + 0.05, ids, labels, name="one")
    r2 = _run(tmp_path / "runs", np.eye(3)[[0, 2, 2, 1]] * 0.5 + 0.1, ids, labels, name="two")
    assert {r.id for r in list_runs(tmp_path / "runs")} == {r1.id, r2.id}
    assert resolve_run(None, runs=tmp_path / "runs").id in {r1.id, r2.id}
    ev = evaluate_runs([r1, r2], ensemble=True, plots_dir=tmp_path / "plots")
    assert set(ev.rows) == {"ensemble", r1.id, r2.id}
    assert ev.rows[r1.id]["top1"] == 0.75 and ev.rows["ensemble"]["top1"] == 0.75
    for p in ev.plots:
        assert p.read_bytes()[:4] == b"\x89PNG"


def test_submission_round_trip_mva(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((5, 3)).astype(np.float32)
    ids = np.array([f"mistery_category/{i:03d}.jpg" for i in range(5)], dtype=object)
    preds = Predictions(ids, probs, np.full(5, -1))
    out = write_submission(preds, tmp_path / "sub.csv", classes=CLASSES, test=FOLDERS)
    header, rows = read_submission(out)
    assert header == ["Id", "Category"]
    assert rows == [[f"{i:03d}", str(int(c))] for i, c in enumerate(probs.argmax(1))]
    assert out.read_text().startswith("Id,Category\n000,")
    sample = tmp_path / "sample.csv"
    with open(sample, "w", newline="") as f:
        csv.writer(f).writerows([["Id", "Category"]] + [[f"{i:03d}", "0"] for i in (4, 2, 0, 1, 3)])
    _, rows = read_submission(write_submission(preds, tmp_path / "s2.csv", classes=CLASSES, test=FOLDERS, sample=sample))
    assert [r[0] for r in rows] == ["004", "002", "000", "001", "003"]


def test_submission_round_trip_boostcamp(tmp_path: Path) -> None:
    probs = np.eye(3)[[2, 0, 1]].astype(np.float32)
    preds = Predictions(np.array(["a.jpg", "b.jpg", "c.jpg"], dtype=object), probs, np.full(3, -1))
    test = TestSplit("csv", order=("c.jpg", "a.jpg", "b.jpg"), paths=("./c.jpg", "a.jpg", "b.jpg"))
    out = write_submission(preds, tmp_path / "sub.csv", classes=CLASSES, test=test)
    header, rows = read_submission(out)
    assert header == ["ID", "image_path", "target"]
    assert rows == [["0", "./c.jpg", "1"], ["1", "a.jpg", "2"], ["2", "b.jpg", "0"]]  # test.csv's exact strings


@pytest.mark.parametrize("kwargs, match", [
    ({"fmt": "kaggle"}, "unknown submission format"),
    ({"fmt": "boostcamp"}, "needs the test.csv order"),
    ({"labels": "words"}, "unknown --labels"),
    ({"test": TestSplit("imported", generated_ids=True)}, "imported without ids"),
])
def test_submission_validation(tmp_path: Path, kwargs: dict, match: str) -> None:
    preds = Predictions(np.array([f"t/{i}.png" for i in range(5)], dtype=object), np.ones((5, 3), np.float32), np.full(5, -1))
    args = {"classes": CLASSES, "test": FOLDERS, **kwargs}
    with pytest.raises(ProbesError, match=match):
        write_submission(preds, tmp_path / "x.csv", **args)
    assert not (tmp_path / "x.csv").exists()


def test_duplicate_stems_are_refused(tmp_path: Path) -> None:
    preds = Predictions(np.array(["t/a.png", "t/a.jpg"], dtype=object), np.ones((2, 3), np.float32), np.full(2, -1))
    with pytest.raises(ProbesError, match="duplicate submission id 'a'"):
        write_submission(preds, tmp_path / "x.csv", classes=CLASSES, test=FOLDERS)


def test_a_class_without_training_images_is_refused(tmp_path: Path) -> None:
    """Probabilities would be one column short and every later class shifted: an error, not a submission."""
    from probes.train import FitRequest, fit_run

    rng = np.random.default_rng(0)
    files = {}
    for split, labels in (("train", [0, 1, 3] * 10), ("val", [0, 1, 3] * 3)):
        files[split] = tmp_path / f"{split}.npz"
        np.savez(files[split], features=rng.normal(size=(len(labels), 4)).astype(np.float32), labels=np.array(labels))
    import_arrays("gap", files, cache=tmp_path / "cache", classes=["ant", "bee", "cat", "dog"])
    for budget in (None, 1e-9):  # in memory and streaming
        with pytest.raises(ProbesError, match="1 class\\(es\\) have no training image: 'cat'"):
            fit_run(FitRequest(features=("gap",), device="cpu", memory_budget_gb=budget), cache=tmp_path / "cache",
                    runs=tmp_path / "runs")


def test_ensemble_is_never_below_its_best_member_on_val(tmp_path: Path) -> None:
    """A strong run and a confidently wrong one: a plain mean drops below the strong run, the
    val-chosen weights do not."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    ids = [f"{'abc'[c]}/{i}" for i, c in enumerate(labels)]
    good = np.eye(3)[np.where(rng.random(60) < 0.8, labels, (labels + 1) % 3)] * 0.4 + 0.2
    bad = np.eye(3)[(labels + 2) % 3] * 0.97 + 0.01
    r1, r2 = _run(tmp_path / "runs", good, ids, labels, name="good"), _run(tmp_path / "runs", bad, ids, labels, name="bad")
    plain = (np.mean([good, bad], 0).argmax(1) == labels).mean()
    ev = evaluate_runs([r1, r2], ensemble=True, plots_dir=tmp_path / "plots")
    assert plain < ev.rows[r1.id]["top1"] <= ev.rows["ensemble"]["top1"]
    assert ev.weights[r1.id] > ev.weights[r2.id]
