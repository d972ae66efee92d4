"""probes fit --tta / --train-views on a set extracted with --views orig,hflip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from featstore.cli import featstore_app
from probes.cli import probes_app
from featstore.demo import write_digits
from featstore.store import open_feature_set
from probes.data import load_features
from probes.runs import list_runs

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("views")
    write_digits(tmp / "data", size=12, val_fraction=0.25, test_fraction=0.1)
    res = runner.invoke(featstore_app, ["extract", "--model", "pixels", "--data", str(tmp / "data"), "--views",
                                        "orig,hflip", "--cache", str(tmp / "cache"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    return tmp


def _probes(tmp: Path, *args: str):
    return runner.invoke(probes_app, [*args, "--cache", str(tmp / "cache"), "--runs", str(tmp / "runs")])


def test_tta_averages_the_views_and_train_views_adds_rows(store: Path) -> None:
    cache = store / "cache"
    orig, flip = open_feature_set("pixels", cache=cache), open_feature_set("pixels@hflip", cache=cache)
    plain = load_features(["pixels"], cache=cache)
    tta = load_features(["pixels"], cache=cache, tta=True, train_views=True)
    val_o, val_f = orig.load("val"), flip.load("val")
    assert np.allclose(tta.split("val").features, (val_o.features + val_f.features) / 2)
    assert not np.allclose(val_o.features, val_f.features)  # the flip is a different vector
    train = tta.split("train")
    n = len(plain.split("train"))
    assert len(train) == 2 * n and np.array_equal(train.ids[:n], train.ids[n:])
    assert np.array_equal(train.features[n:], flip.load("train").features)


def test_fit_with_views_in_holdout_and_cv(store: Path) -> None:
    plain = ("-p", "C=1", "-p", "shrink=1")  # one plain fit each: the views, not the search, are under test
    res = _probes(store, "fit", "-f", "pixels", "--tta", "--train-views", *plain)
    assert res.exit_code == 0, res.output
    run = list_runs(store / "runs")[0]
    assert run.config["request"]["tta"] and run.metrics["val_top1"] > 0.8
    res = _probes(store, "fit", "-f", "pixels", "--train-views", "--cv", "3", *plain)
    assert res.exit_code == 0, res.output
    run = list_runs(store / "runs")[0]
    assert "views of each image kept in one fold" in run.metrics["selection"]
    oof = run.predictions("oof")
    assert len(np.unique(oof.ids)) == len(oof.ids)  # scored once per image, on its original view


def test_views_needed(store: Path, tmp_path: Path) -> None:
    res = runner.invoke(featstore_app, ["extract", "--model", "pixels", "--data", str(store / "data"),
                                        "--cache", str(tmp_path / "c"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(probes_app, ["fit", "-f", "pixels", "--tta", "--cache", str(tmp_path / "c"),
                                     "--runs", str(tmp_path / "r")])
    assert res.exit_code == 1 and "no other view stored" in res.output, res.output
