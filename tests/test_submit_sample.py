"""probes submit follows any sample (issue 12): the seed-003 Kaggle case end to end, id styles, hints and refusals."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from probes.cli import probes_app
from featstore.importer import import_arrays
from probes.data import ProbesError
from probes.runs import Predictions, list_runs
from probes.sample import match_sample, read_sample
from probes.submit import build_table, read_submission
from probes.testsplit import TestSplit, split_record

runner = CliRunner()
N_TEST = 12


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 separable classes; test files 0.jpg..11.jpg (the store sorts them 0, 1, 10, 11, 2, ...); one fitted run."""
    tmp = tmp_path_factory.mktemp("kaggle")
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)).astype(np.float32) * 4

    def part(n: int, split: str) -> Path:
        y = np.arange(n) % 3
        x = centers[y] + rng.normal(size=(n, 8)).astype(np.float32) * 0.3
        ids = [f"{i}.jpg" for i in range(n)] if split == "test" else [f"c{c}/{i}.jpg" for i, c in enumerate(y)]
        arrays = {"features": x, "ids": np.array(ids)}
        if split != "test":
            arrays["labels"] = y
        np.savez(tmp / f"{split}.npz", **arrays)
        return tmp / f"{split}.npz"

    files = {"train": part(60, "train"), "val": part(30, "val"), "test": part(N_TEST, "test")}
    import_arrays("kag", files, cache=tmp / "cache", classes=["apple", "bear", "car"])
    res = runner.invoke(probes_app, ["fit", "-f", "kag", "--cache", str(tmp / "cache"), "--runs", str(tmp / "runs")])
    assert res.exit_code == 0, res.output
    return tmp


def _submit(tmp: Path, *args: str):
    return runner.invoke(probes_app, ["submit", *args, "--cache", str(tmp / "cache"), "--runs", str(tmp / "runs")])


def test_seed003_kaggle_sample_header_id_style_and_order(kaggle: Path) -> None:
    """Kaggle's ID,Label with ids 0.jpg in numeric order: written exactly so, today's refusal gone."""
    ids = [f"{i}.jpg" for i in range(N_TEST)]
    sample = _write_csv(kaggle / "sample_submission.csv", [["ID", "Label"]] + [[i, "0"] for i in ids])
    out = kaggle / "sub.csv"
    res = _submit(kaggle, "--sample", str(sample), "--out", str(out))
    assert res.exit_code == 0, res.output
    header, rows = read_submission(out)
    assert header == ["ID", "Label"] and [r[0] for r in rows] == ids
    assert [r[1] for r in rows] == [str(i % 3) for i in range(N_TEST)]  # separable: every label right, by index
    run = list_runs(kaggle / "runs")[0]
    assert f"using run {run.id}" in res.output and "top-1" in res.output  # which run, with its val score
    assert "keep the extension" in res.output


def test_sample_with_class_names_gets_names(kaggle: Path) -> None:
    sample = _write_csv(kaggle / "names.csv", [["file", "species"]] + [[str(i), "apple"] for i in range(N_TEST)][::-1])
    out = kaggle / "names_sub.csv"
    res = _submit(kaggle, "--sample", str(sample), "--out", str(out))
    assert res.exit_code == 0, res.output
    header, rows = read_submission(out)
    names = ["apple", "bear", "car"]
    assert header == ["file", "species"] and rows == [[str(i), names[i % 3]] for i in range(N_TEST)][::-1]
    res = _submit(kaggle, "--sample", str(sample), "--out", str(out), "--labels", "index")
    assert res.exit_code == 0 and read_submission(out)[1][0] == [str(N_TEST - 1), str((N_TEST - 1) % 3)]


def test_a_sample_of_other_images_is_refused_by_name(kaggle: Path) -> None:
    rows = [[f"{i}.jpg", "0"] for i in range(N_TEST - 1)] + [["stray.jpg", "0"]]
    sample = _write_csv(kaggle / "bad.csv", [["ID", "Label"]] + rows)
    res = _submit(kaggle, "--sample", str(sample), "--out", str(kaggle / "bad_sub.csv"))
    assert res.exit_code == 1 and "'stray.jpg' is no test image" in res.output
    assert "'11.jpg' is not in the sample" in res.output and not (kaggle / "bad_sub.csv").exists()


def test_a_run_submits_after_its_feature_set_is_deleted(kaggle: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(kaggle / "cache", cache)
    runs = tmp_path / "runs"
    shutil.copytree(kaggle / "runs", runs)
    shutil.rmtree(cache)
    res = runner.invoke(probes_app, ["submit", "--out", str(tmp_path / "s.csv"), "--cache", str(cache), "--runs", str(runs)])
    assert res.exit_code == 0, res.output
    assert read_submission(tmp_path / "s.csv")[0] == ["Id", "Category"]


def _preds(ids: list[str]) -> Predictions:
    probs = np.eye(3, dtype=np.float32)[[i % 3 for i in range(len(ids))]]
    return Predictions(np.array(ids, dtype=object), probs, np.full(len(ids), -1))


@pytest.mark.parametrize("sample_ids, style", [
    (["test/b.png", "test/a.png"], "path"),
    (["b.png", "a.png"], "name"),
    (["b", "a"], "stem"),
])
def test_id_styles(tmp_path: Path, sample_ids: list[str], style: str) -> None:
    sample = _write_csv(tmp_path / "s.csv", [["Id", "Category"]] + [[i, "0"] for i in sample_ids])
    m = match_sample(read_sample(sample), ["test/a.png", "test/b.png"], where="s.csv")
    assert m.style == style and m.images == [1, 0] and (m.id_col, m.label_col) == (0, 1)


def test_integer_ids_and_an_extension_mismatch_is_a_hint(tmp_path: Path) -> None:
    ints = _write_csv(tmp_path / "i.csv", [["Id", "Category"], ["7", "0"], ["10", "0"]])
    assert match_sample(read_sample(ints), ["007.jpg", "010.jpg"], where="i.csv").style == "integer"
    png = _write_csv(tmp_path / "p.csv", [["Id", "Category"], ["b.png", "0"], ["a.png", "0"]])
    table = build_table(_preds(["a.jpg", "b.jpg"]), classes=["x", "y", "z"], test=TestSplit("folders"), sample=png)
    assert table.rows == [["b.png", "1"], ["a.png", "0"]] and any("matched by stem" in n for n in table.notes)


def test_boostcamp_sample_fills_target_keeps_its_id_and_path_strings(tmp_path: Path) -> None:
    sample = _write_csv(tmp_path / "s.csv", [["ID", "image_path", "target"], ["0", "./b.jpg", "0"], ["1", "./a.jpg", "0"]])
    table = build_table(_preds(["a.jpg", "b.jpg"]), classes=["x", "y", "z"], test=TestSplit("csv"), sample=sample)
    assert table.rows == [["0", "./b.jpg", "1"], ["1", "./a.jpg", "0"]]


def test_generated_ids_need_a_sample_and_match_by_position(tmp_path: Path) -> None:
    test = TestSplit("imported", generated_ids=True)
    preds = _preds([f"test/{k:07d}" for k in range(3)])
    with pytest.raises(ProbesError, match="imported without ids"):
        build_table(preds, classes=["x", "y", "z"], test=test)
    sample = _write_csv(tmp_path / "s.csv", [["ID", "Label"], ["q.jpg", "0"], ["r.jpg", "0"], ["s.jpg", "0"]])
    assert build_table(preds, classes=["x", "y", "z"], test=test, sample=sample).rows == [
        ["q.jpg", "0"], ["r.jpg", "1"], ["s.jpg", "2"]]


def test_record_keeps_test_csv_strings_and_the_layout_format(tmp_path: Path) -> None:
    _write_csv(tmp_path / "test.csv", [["image_path"], ["./t3.png"], ["t1.png"]])
    test = split_record({"layout": "csv", "root": str(tmp_path), "test_order": ["t3.png", "t1.png"]}, ["t1.png", "t3.png"])
    assert test.csv_paths() == ["./t3.png", "t1.png"] and test.default_format == "boostcamp"
    assert TestSplit.from_dict(test.to_dict()) == test
    assert split_record({"layout": "folders"}, ["x/a.png"]).default_format == "mva"
    assert split_record({"layout": "imported"}, ["test/0000000"]).generated_ids


def test_a_name_of_two_datasets_is_refused_unless_data_picks_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same encoder name over two datasets: fit lists both (key, dataset, date); --data picks; fit prints what it used."""
    from featstore.store.catalog import open_feature_set

    cache = tmp_path / "cache"
    keys = {}
    for name in ("alpha", "beta"):
        rng = np.random.default_rng(len(name))
        y = np.arange(30) % 3
        for split in ("train", "val"):
            np.savez(tmp_path / f"{name}_{split}.npz", features=rng.normal(size=(30, 4)).astype(np.float32) + y[:, None],
                     labels=y, ids=np.array([f"{i}.png" for i in range(30)]))
        folder = import_arrays("enc", {s: tmp_path / f"{name}_{s}.npz" for s in ("train", "val")}, cache=cache)
        manifest = folder / "manifest.json"
        import json

        m = json.loads(manifest.read_text())
        m["dataset"] = {**m["dataset"], "name": name, "root": str(tmp_path / name)}  # as if extracted from two folders
        manifest.write_text(json.dumps(m))
        keys[name] = folder.name
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="names feature sets of 2 datasets") as e:
        open_feature_set("enc", cache=cache)
    assert keys["alpha"] in str(e.value) and "dataset beta" in str(e.value)
    assert open_feature_set("enc", cache=cache, dataset=tmp_path / "beta").key == keys["beta"]
    (tmp_path / "alpha").mkdir()
    monkeypatch.chdir(tmp_path / "alpha")  # the current dataset decides
    assert open_feature_set("enc", cache=cache).key == keys["alpha"]
    res = runner.invoke(probes_app, ["fit", "-f", "enc", "--data", str(tmp_path / "beta"), "--cache", str(cache),
                                     "--runs", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert f"features: enc key {keys['beta']}, dataset beta" in res.output
