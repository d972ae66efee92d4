"""featstore import takes what notebooks save (issue 12): torch.save((X, y)) tuples, key aliases, and info works after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from featstore.cli import featstore_app
from featstore.store import open_feature_set

runner = CliRunner()


def _xy(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype(np.float32), np.arange(n) % 2


@pytest.mark.parametrize("kind", ["tuple", "aliases_pt", "aliases_npz"])
def test_import_tuples_and_aliases_says_which_and_info_works(tmp_path: Path, kind: str) -> None:
    x, y = _xy()
    path = tmp_path / ("train.npz" if kind.endswith("npz") else "train.pt")
    if kind == "tuple":
        torch.save((torch.from_numpy(x), torch.from_numpy(y)), path)
        used = "features from 'features', labels from 'labels'"
    elif kind == "aliases_pt":
        torch.save({"embeddings": torch.from_numpy(x), "targets": torch.from_numpy(y)}, path)
        used = "features from 'embeddings', labels from 'targets'"
    else:
        np.savez(path, feats=x, label=y, paths=np.array([f"c{c}/{i}.jpg" for i, c in enumerate(y)]))
        used = "features from 'feats', labels from 'label', ids from 'paths'"
    cache = tmp_path / "cache"
    res = runner.invoke(featstore_app, ["import", "nb", "--train", str(path), "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    assert f"train: {used}" in res.output and "20 x 6" in res.output
    fs = open_feature_set("nb", cache=cache)
    assert fs.count("train") == 20
    assert "audit:" in res.output and list((fs.folder / "audit-cache").glob("*.npz"))  # as after extract: a fit reuses it
    res = runner.invoke(featstore_app, ["info", "nb", "--cache", str(cache)])  # KeyError 'precision' before
    assert res.exit_code == 0, res.output
    assert "precision as imported" in res.output and "imported" in res.output


def test_a_file_without_features_lists_the_names_looked_for(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", vecs=np.zeros((3, 2), np.float32))
    res = runner.invoke(featstore_app, ["import", "nb", "--train", str(tmp_path / "t.npz"), "--cache", str(tmp_path / "c")])
    assert res.exit_code == 1 and "embeddings" in res.output and "found: vecs" in res.output
