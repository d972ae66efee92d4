"""probes fit / runs / evaluate / submit through typer's test runner, on digits features in the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from featstore.cli import featstore_app
from probes.cli import probes_app
from featstore.importer import import_arrays
from probes.runs import list_runs
from probes.submit import read_submission

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits as two 'encoders' (pixels and a fixed random projection), train/val/test, plus a no-val set."""
    tmp = tmp_path_factory.mktemp("probes")
    d = load_digits()
    x, y = d.data.astype(np.float32), d.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    parts = {"train": order[:1000], "val": order[1000:1400], "test": order[1400:1500]}
    proj = rng.normal(size=(64, 32)).astype(np.float32) / 8
    for name, feats in (("digits_px", x), ("digits_rp", x @ proj)):
        files = {}
        for split, idx in parts.items():
            ids = np.array([f"mistery_category/{i:04d}.png" if split == "test" else f"{y[i]}/{i:04d}.png" for i in idx])
            arrays = {"features": feats[idx], "ids": ids}
            if split != "test":
                arrays["labels"] = y[idx]
            np.savez(tmp / f"{name}_{split}.npz", **arrays)
            files[split] = tmp / f"{name}_{split}.npz"
        import_arrays(name, files, cache=tmp / "cache", classes=[str(c) for c in range(10)])
    res = runner.invoke(featstore_app, ["import", "digits_noval", "--train", str(tmp / "digits_px_train.npz"),
                                        "--cache", str(tmp / "cache")])
    assert res.exit_code == 0, res.output
    return tmp


def _probes(store: Path, *args: str):
    return runner.invoke(probes_app, [*args, "--cache", str(store / "cache"), "--runs", str(store / "runs")]
                         if args[0] in ("fit", "submit") else [*args, "--runs", str(store / "runs")])


def test_fit_logistic_writes_a_complete_run(store: Path) -> None:
    res = _probes(store, "fit", "--features", "digits_px", "--head", "logistic")
    assert res.exit_code == 0, res.output
    run = list_runs(store / "runs")[0]
    files = {p.name for p in run.folder.iterdir()}
    assert {"head.safetensors", "config.json", "metrics.json", "predictions-val.npz", "predictions-test.npz"} <= files
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert 0.9 < metrics["val_top1"] <= metrics["val_top5"] <= 1.0
    config = json.loads((run.folder / "config.json").read_text())
    assert config["classes"] == [str(c) for c in range(10)] and config["features"][0]["encoder"] == "digits_px"


def test_concatenated_sets_mlp_final_and_ensemble_submit(store: Path) -> None:
    res = _probes(store, "fit", "-f", "digits_px,digits_rp", "--head", "mlp", "--final",
                  "-p", "epochs=8", "-p", "hidden=(64,)")
    assert res.exit_code == 0, res.output
    runs = list_runs(store / "runs")
    assert runs[0].config["dim"] == 96 and "refit on train+val" in runs[0].metrics["selection"]
    res = _probes(store, "evaluate", runs[0].id, runs[1].id, "--ensemble")
    assert res.exit_code == 0, res.output
    assert "ensemble" in res.output and (runs[0].folder / "confusion-val.png").exists()
    out = store / "sub.csv"
    res = _probes(store, "submit", "--ensemble", runs[0].id, "--ensemble", runs[1].id, "--out", str(out))
    assert res.exit_code == 0, res.output
    header, rows = read_submission(out)
    assert header == ["Id", "Category"] and len(rows) == 100
    assert rows[0][0] == runs[0].predictions("test").ids[0].split("/")[-1][:-4]


def test_sweep_prints_the_grid(store: Path) -> None:
    res = _probes(store, "fit", "-f", "digits_rp", "--sweep")
    assert res.exit_code == 0, res.output
    assert "sweep" in res.output and "shrink" in res.output


def test_no_val_split_uses_stratified_kfold(store: Path) -> None:
    res = _probes(store, "fit", "-f", "digits_noval", "--cv", "3")
    assert res.exit_code == 0, res.output
    run = list_runs(store / "runs")[0]
    # digits (8x8) hold look-alikes at cos >= 0.95; folds keep them together, which costs ~2 points (88.6%)
    assert run.metrics["selection"].startswith("3-fold CV") and run.has("oof") and run.metrics["val_top1"] > 0.85
    assert "duplicate clusters kept inside one fold" in run.metrics["selection"]
    res = _probes(store, "evaluate", run.id)
    assert res.exit_code == 0 and "oof metrics" in res.output
    res = _probes(store, "submit", run.id, "--out", str(store / "x.csv"))
    assert res.exit_code == 1 and "has no test predictions" in res.output


@pytest.mark.parametrize("args, message", [
    (["fit", "-f", "nope"], "no feature set 'nope'"),
    (["fit", "-f", "digits_px", "--head", "svm"], "unknown head 'svm'; known: clap, knn, logistic, lpp, mlp"),
    (["fit", "-f", "digits_px", "-p", "bogus=1"], "bad parameter for the logistic head"),
    (["fit", "-f", "digits_px,digits_noval"], "split val is missing"),
    (["submit", "does-not-exist", "--out", "x.csv"], "matches no run"),
])
def test_errors_are_one_line(store: Path, args: list[str], message: str) -> None:
    res = _probes(store, *args)
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


def test_load_run_reproduces_the_stored_test_probabilities(store: Path) -> None:
    import probes
    from featstore.store import open_feature_set

    for head in ("logistic", "mlp"):
        res = _probes(store, "fit", "-f", "digits_rp", "--head", head, "-p", "epochs=5") if head == "mlp" else \
            _probes(store, "fit", "-f", "digits_rp", "--head", head)
        assert res.exit_code == 0, res.output
        run = list_runs(store / "runs")[0]
        assert run.config["head"] == head and "version" in run.config and "hidden" * (head == "mlp") in str(run.config["params"])
        test = open_feature_set("digits_rp", cache=store / "cache").load("test")
        again = probes.load_run(run.id, runs=store / "runs").predict_proba(test.features)
        assert np.array_equal(again, run.predictions("test").probs)
        m = run.metrics
        assert m["temperature"] > 0 and m["val_ece"] <= m["val_ece_uncalibrated"] + 0.01 and m["val_ece"] < 0.06


def test_predict_writes_probabilities_and_a_submission(store: Path) -> None:
    res = _probes(store, "fit", "-f", "digits_px")
    assert res.exit_code == 0, res.output
    run = list_runs(store / "runs")[0]
    out = store / "pred"
    res = runner.invoke(probes_app, ["predict", run.id, "--features", "digits_px", "--out", str(out),
                                     "--runs", str(store / "runs"), "--cache", str(store / "cache")])
    assert res.exit_code == 0, res.output
    with np.load(out / "probabilities-test.npz") as z:
        assert np.array_equal(z["probs"], run.predictions("test").probs)
    header, rows = read_submission(out / "submission.csv")
    assert header == ["Id", "Category"] and len(rows) == 100
    res = runner.invoke(probes_app, ["predict", run.id, "--features", "digits_rp", "--out", str(out),
                                     "--runs", str(store / "runs"), "--cache", str(store / "cache")])
    assert res.exit_code == 1 and "expects 64 features per image; digits_rp has 32" in res.output


def test_grid_option_and_heads_listing(store: Path) -> None:
    res = _probes(store, "fit", "-f", "digits_rp", "--grid", "C=0.01,1", "--grid", "shrink=1")
    assert res.exit_code == 0, res.output
    run = list_runs(store / "runs")[0]
    assert run.config["sweep"] and run.config["grid"] == {"C": [0.01, 1], "shrink": [1]}
    res = runner.invoke(probes_app, ["heads"])
    assert res.exit_code == 0 and "logistic" in res.output and "mlp" in res.output and "dropout" in res.output
    res = runner.invoke(probes_app, ["fit", "--help"])
    assert "logistic: C=" in " ".join(res.output.replace("│", " ").split())  # rich wraps help in a box


def test_bad_parameter_values_are_one_line(store: Path) -> None:
    res = _probes(store, "fit", "-f", "digits_px", "--head", "mlp", "-p", "dropout=1.5")
    assert res.exit_code == 1 and "dropout must be float in [0, 1), got 1.5" in res.output
    res = _probes(store, "fit", "-f", "digits_px", "--head", "svm")
    assert res.exit_code == 1 and "unknown head 'svm'; known: clap, knn, logistic" in res.output


def test_cv_threads_groups_into_the_folds(store: Path) -> None:
    from probes.train import FitRequest, fit_run

    n = 1000  # digits_noval: the 1000 train rows
    groups = np.arange(n) // 4
    res = fit_run(FitRequest(features=("digits_noval",), cv=3), cache=store / "cache", runs=store / "runs",
                  groups=groups)
    assert "grouped" in res.mode and res.run.config["groups"] is True and res.run.metrics["val_top1"] > 0.9
