"""The few-shot heads through `probes fit --head NAME [--text]`: saved runs, load back, submit, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from probes.cli import probes_app
from featstore.importer import import_arrays
from probes.runs import list_runs

runner = CliRunner()
K, D = 6, 24


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CLIP-like paired features: images = class direction + noise, text = direction + text noise."""
    tmp = tmp_path_factory.mktemp("fewshot_fit")
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(K, D)).astype(np.float32)
    files = {}
    for split, n in (("train", 8), ("val", 10), ("test", 5)):
        y = np.repeat(np.arange(K), n)
        x = dirs[y] + 0.8 * rng.normal(size=(len(y), D)).astype(np.float32)
        ids = np.array([f"c{c}/{split}{i:03d}.png" for i, c in enumerate(y)])
        arrays = {"features": x, "ids": ids}
        if split != "test":
            arrays["labels"] = y
        np.savez(tmp / f"{split}.npz", **arrays)
        files[split] = tmp / f"{split}.npz"
    classes = [f"c{c}" for c in range(K)]
    import_arrays("paired", files, cache=tmp / "cache", classes=classes)
    text = dirs[:, None, :] + 0.3 * rng.normal(size=(K, 3, D)).astype(np.float32)
    np.savez(tmp / "text.npz", classes=np.array(classes), embeddings=text, logit_scale=np.float32(50.0))
    return tmp


def _probes(tmp: Path, *args: str):
    return runner.invoke(probes_app, [*args, "--cache", str(tmp / "cache"), "--runs", str(tmp / "runs")])


@pytest.mark.parametrize("head", ["zeroshot", "knn", "prototype", "clap", "lpp", "tip", "wise", "zslogistic"])
def test_fewshot_head_fits_saves_and_loads_back(store: Path, head: str) -> None:
    import probes
    from featstore.store import open_feature_set

    text = ["--text", str(store / "text.npz")] if head not in ("knn", "prototype") else []
    res = _probes(store, "fit", "-f", "paired", "--head", head, *text)
    assert res.exit_code == 0, res.output
    run = list_runs(store / "runs")[0]
    assert run.config["head"] == head and run.metrics["val_top1"] > 0.5, run.metrics
    test = open_feature_set("paired", cache=store / "cache").load("test")
    again = probes.load_run(run.id, runs=store / "runs").predict_proba(test.features)
    assert np.array_equal(again, run.predictions("test").probs)
    out = store / f"sub-{head}.csv"
    res = _probes(store, "submit", run.id, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 1 + len(test.ids)


def test_text_heads_need_text_and_others_refuse_it(store: Path) -> None:
    res = _probes(store, "fit", "-f", "paired", "--head", "zeroshot")
    assert res.exit_code == 1 and "needs class-name text embeddings" in res.output, res.output
    res = _probes(store, "fit", "-f", "paired", "--head", "logistic", "--text", str(store / "text.npz"))
    assert res.exit_code == 1 and "uses no text embeddings" in res.output, res.output


def test_text_classes_must_match(store: Path) -> None:
    bad = store / "bad_text.npz"
    np.savez(bad, classes=np.array([f"x{c}" for c in range(K)]), embeddings=np.ones((K, D), np.float32))
    res = _probes(store, "fit", "-f", "paired", "--head", "zeroshot", "--text", str(bad))
    assert res.exit_code == 1 and "text classes differ" in res.output, res.output
