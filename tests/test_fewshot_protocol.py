"""The few-shot protocol: strict draws, same draws for every head, intervals, outputs; `probes fewshot` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from probes.fewshot import protocol
from probes.fewshot.protocol import draw_shots, interval, run_protocol


def test_draws_are_exactly_k_per_class_and_nested() -> None:
    y = np.repeat(np.arange(7), 20)[np.random.default_rng(0).permutation(140)]
    for seed in range(3):
        prev = np.array([], dtype=int)
        for k in (1, 2, 4, 8, 16):
            idx = draw_shots(y, k, seed)
            assert len(np.unique(idx)) == len(idx)
            assert np.array_equal(np.bincount(y[idx], minlength=7), np.full(7, k))
            assert set(prev) <= set(idx)
            prev = idx
    assert not np.array_equal(draw_shots(y, 4, 0), draw_shots(y, 4, 1))
    with pytest.raises(ValueError, match="needs 21"):
        draw_shots(y, 21, 0)


def test_every_head_sees_the_same_draws_and_never_a_val_image(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    mu = rng.standard_normal((5, 8))
    yt, yv = np.repeat(np.arange(5), 10), np.repeat(np.arange(5), 6)
    xt = (mu[yt] + 0.3 * rng.standard_normal((50, 8))).astype(np.float32)
    xv = (mu[yv] + 0.3 * rng.standard_normal((30, 8))).astype(np.float32)
    xt[:, 0], xv[:, 0] = np.arange(50), 1000 + np.arange(30)  # tag rows: train ids < 1000 <= val ids
    seen: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    real_fit = {name: cls.fit for name, cls in protocol.PROTOCOL_HEADS.items()}

    def spy(name: str):
        def fit(self, X, y, **kw):
            seen.setdefault(name, []).append((len(X), tuple(np.asarray(X)[:, 0].astype(int))))
            assert np.all(np.asarray(X)[:, 0] < 1000), "a val image reached fit"
            return real_fit[name](self, X, y, **kw)
        return fit

    for name in ("knn", "prototype", "logistic"):
        monkeypatch.setattr(protocol.PROTOCOL_HEADS[name], "fit", spy(name))
    res = run_protocol((xt, yt), (xv, yv), shots=(1, 3), seeds=2, heads=("knn", "prototype", "logistic"))
    assert seen["knn"] == seen["prototype"] == seen["logistic"]
    assert [n for n, _ in seen["knn"]] == [5, 5, 15, 15]
    assert {(r["head"], r["shots"]) for r in res.rows} == {(h, k) for h in ("knn", "prototype", "logistic") for k in (1, 3)}
    assert all(len(r["accs"]) == 2 and r["selection"] for r in res.rows)


def test_interval_is_the_students_t_half_width() -> None:
    mean, half = interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and half == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert interval([0.4]) == (0.4, 0.0)


def test_text_heads_without_text_are_refused() -> None:
    x, y = np.zeros((4, 3), dtype=np.float32), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="need class-name text"):
        run_protocol((x, y), (x, y), shots=(1,), seeds=1, heads=("clap",))
    with pytest.raises(ValueError, match="unknown head"):
        run_protocol((x, y), (x, y), shots=(1,), seeds=1, heads=("nope",))


def test_probes_fewshot_command(tmp_path: Path) -> None:
    """An imported CLIP-like set and its text .npz through `probes fewshot`: table, JSON, PNG, zero-shot line."""
    from probes.cli import probes_app
    from featstore.importer import import_arrays

    rng = np.random.default_rng(2)
    k, d = 4, 16
    mu = rng.standard_normal((k, d))
    files = {}
    for split, n in (("train", 6), ("val", 5)):
        y = np.repeat(np.arange(k), n)
        np.savez(tmp_path / f"{split}.npz", features=(mu[y] + 0.5 * rng.standard_normal((len(y), d))).astype(np.float32),
                 labels=y, ids=np.array([f"c{c}/{split}{i}.png" for i, c in enumerate(y)]))
        files[split] = tmp_path / f"{split}.npz"
    classes = [f"c{c}" for c in range(k)]
    import_arrays("clipish", files, cache=tmp_path / "cache", classes=classes)
    np.savez(tmp_path / "text.npz", classes=np.array(classes), embeddings=(mu[:, None] + 0.3 * rng.standard_normal((k, 2, d))).astype(np.float32))
    res = CliRunner().invoke(probes_app, ["fewshot", "--features", "clipish", "--text", str(tmp_path / "text.npz"),
                                          "--shots", "1,2", "--seeds", "2", "--heads", "zeroshot,prototype,clap,tip",
                                          "--out", str(tmp_path / "fs"), "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "clap" in res.output and "rule" in res.output
    data = json.loads((tmp_path / "fs" / "fewshot.json").read_text())
    assert {r["head"] for r in data["rows"]} == {"zeroshot", "prototype", "clap", "tip"}
    assert data["meta"]["evaluated_on"] == "val" and (tmp_path / "fs" / "fewshot.png").stat().st_size > 1000
    bad = CliRunner().invoke(probes_app, ["fewshot", "--features", "clipish", "--heads", "clap",
                                          "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "fs2")])
    assert bad.exit_code == 1 and "need class-name text" in bad.output
