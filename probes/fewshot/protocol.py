"""The few-shot protocol: exactly k train images per class per seed, the same draws for every head, scored on val."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.base import clone

from probes.fewshot import FEWSHOT_HEADS
from probes.fewshot.logistic import FewShotLogistic

# The protocol's heads: the few-shot ones plus a plain logistic baseline (this package's L-BFGS
# FewShotLogistic, until the redesigned LogisticHead takes its place).
PROTOCOL_HEADS: dict[str, Any] = {**FEWSHOT_HEADS, "logistic": FewShotLogistic}
TEXT_FREE = ("knn", "prototype", "logistic")


def draw_shots(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of exactly k rows of each class (sorted): a seeded permutation per class, its first k.

    Draws are nested (the 2-shot set of a seed holds its 1-shot set), so curves over k move by adding
    shots, not by reshuffling. A class with fewer than k rows is an error, never a smaller draw.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < k:
        short = classes[counts < k][:5]
        raise ValueError(f"{k}-shot needs {k} train images per class; classes {list(short)} have {counts.min()} or fewer")
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c in classes]
    return np.sort(np.concatenate(picked))


@dataclass
class FewShotResult:
    """Accuracy per head and k over seeds: mean and a 95% t-interval; zero-shot has k = 0 (no shots)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def mean(self, head: str, k: int) -> float:
        return next(r["mean"] for r in self.rows if r["head"] == head and r["shots"] == k)

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def interval(accs: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (0 with a single seed)."""
    a = np.asarray(accs, dtype=float)
    if len(a) < 2:
        return float(a.mean()), 0.0
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))


def run_protocol(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *, text: Any = None,
                 shots: Sequence[int] = (1, 2, 4, 8, 16), seeds: int = 5, heads: Sequence[str] | None = None,
                 params: dict[str, dict[str, Any]] | None = None,
                 progress: Callable[[str], None] | None = None) -> FewShotResult:
    """Fit every head on the same k-shot draws (seeds 0..seeds-1), score on `val`, aggregate.

    Hyper-parameters are chosen by each head inside the shots (CV, leave-one-out or its stated
    rule; the row's `selection` says which), never on `val`. `params` overrides a head's defaults.
    """
    heads = list(heads or (PROTOCOL_HEADS if text is not None else TEXT_FREE))
    _check_request(heads, text, shots, seeds)
    xt, yt = train
    xv, yv = val
    draws = {(k, s): draw_shots(yt, k, s) for k in shots for s in range(seeds)}
    res = FewShotResult(meta={"shots": list(shots), "seeds": seeds, "n_val": len(yv), "classes": int(len(np.unique(yt))),
                              "dim": int(xt.shape[1]), "heads": heads, "evaluated_on": "val (never drawn from)"})
    for name in heads:
        for k in ([min(shots)] if name == "zeroshot" else shots):
            accs, how, t0 = [], set(), time.perf_counter()
            for s in range(1 if name == "zeroshot" else seeds):
                head = _make(name, s, (params or {}).get(name, {}))
                idx = draws[(k, s)]
                head.fit(xt[idx], yt[idx], text=text if head.needs_text else None)
                accs.append(float((head.predict(xv) == yv).mean()))
                how.add(head.selection_)
            mean, half = interval(accs)
            res.rows.append({"head": name, "shots": 0 if name == "zeroshot" else k, "mean": mean, "ci95": half,
                             "accs": accs, "seconds": time.perf_counter() - t0, "selection": "; ".join(sorted(how))})
            if progress:
                progress(f"{name} k={k}: {mean:.2%} ± {half:.2%}")
    return res


def _make(name: str, seed: int, overrides: dict[str, Any]) -> Any:
    head = clone(PROTOCOL_HEADS[name]())
    if "seed" in head.get_params():
        head.set_params(seed=seed)
    return head.set_params(**overrides)


def _check_request(heads: Sequence[str], text: Any, shots: Sequence[int], seeds: int) -> None:
    unknown = [h for h in heads if h not in PROTOCOL_HEADS]
    if unknown:
        raise ValueError(f"unknown head(s) {', '.join(unknown)}; known: {', '.join(PROTOCOL_HEADS)}")
    needy = [h for h in heads if PROTOCOL_HEADS[h].needs_text]
    if needy and text is None:
        raise ValueError(f"heads {', '.join(needy)} need class-name text embeddings (--text); "
                         f"without text use {', '.join(TEXT_FREE)}")
    if not shots or min(shots) < 1 or seeds < 1:
        raise ValueError(f"shots must be positive integers and seeds >= 1; got {list(shots)}, {seeds}")
