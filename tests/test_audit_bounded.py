"""The audit on a set of near-copies: memory stays bounded, and too many pairs is a message, not a failed command."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from typer.testing import CliRunner

import featstore.audit.audit as audit_mod
import featstore.audit.neighbours as nb
from featstore.errors import StoreError


def _blocks(x: np.ndarray, rows: int):
    return lambda: (x[i:i + rows] for i in range(0, len(x), rows))


def test_candidates_are_confirmed_in_bounded_chunks(monkeypatch):
    """Every row a copy of every other: the pairs come out in pieces no larger than the chunk."""
    monkeypatch.setattr(nb, "CANDIDATE_ROWS", 8)
    monkeypatch.setattr(nb, "EXACT_CHUNK", 50)
    rng = np.random.default_rng(0)
    base = rng.normal(size=16).astype(np.float32)
    x = np.stack([base * (1 + 0.001 * k) for k in range(60)]) + rng.normal(scale=1e-4, size=(60, 16)).astype(np.float32)
    sizes = []
    real = nb._pairs

    def spy(*a, **k):
        for out in real(*a, **k):
            sizes.append(len(out[0]))
            yield out

    monkeypatch.setattr(nb, "_pairs", spy)
    i, j, c = nb.close_pairs(_blocks(x, 20), n=60, dim=16, threshold=0.9, center=False)
    assert len(i) == 60 * 59 // 2 and (i < j).all() and max(sizes) <= 50


def test_too_many_pairs_is_one_line_after_a_command_that_succeeded(tmp_path, monkeypatch):
    from featstore.cli import featstore_app
    from featstore.importer import import_arrays

    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=(1, 12)), 40, axis=0) * np.linspace(1, 2, 40)[:, None]  # one direction
    x = x + rng.normal(scale=1e-3, size=x.shape)
    np.savez(tmp_path / "train.npz", features=x.astype(np.float32), labels=np.arange(40) % 2)
    monkeypatch.setattr(audit_mod, "close_pairs", functools.partial(nb.close_pairs, max_pairs=100))
    audit_mod._MEMO.clear()
    with pytest.raises(StoreError, match="pairs have cosine"):
        nb.close_pairs(_blocks(x.astype(np.float32), 10), n=40, dim=12, threshold=0.9, max_pairs=100, center=False)
    res = CliRunner().invoke(featstore_app, ["import", "same", "--train", str(tmp_path / "train.npz"),
                                             "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "imported same" in res.output and "audit: not summarised" in res.output and "raise --threshold" in res.output
    audit_mod._MEMO.clear()
