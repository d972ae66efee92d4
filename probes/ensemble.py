"""Ensembles of runs: a weighted mean of their calibrated probabilities, the weights chosen on val."""

from __future__ import annotations

import itertools

import numpy as np

from probes.data import ProbesError
from probes.runs import Predictions, Run


def _aligned(runs: list[Run], split: str) -> list[Predictions]:
    preds = [r.predictions(split) for r in runs]
    classes = runs[0].config["classes"]
    for r, p in zip(runs[1:], preds[1:]):
        if r.config["classes"] != classes:
            raise ProbesError(f"runs {runs[0].id} and {r.id} have different class lists; cannot ensemble")
        if not np.array_equal(p.ids, preds[0].ids):
            raise ProbesError(f"runs {runs[0].id} and {r.id} predict different {split} images; cannot ensemble")
    return preds


def _candidates(n: int) -> list[np.ndarray]:
    """Weight vectors on the simplex: a 0.1 grid for up to 3 runs, 0.25 up to 6, else the vertices and
    the uniform mean. The vertices (one run alone) are always among them."""
    steps = 10 if n <= 3 else 4 if n <= 6 else 0
    if steps == 0:
        return [np.eye(n)[i] for i in range(n)] + [np.full(n, 1.0 / n)]
    return [np.array(c, dtype=np.float64) / steps for c in itertools.product(range(steps + 1), repeat=n)
            if sum(c) == steps]


def ensemble_weights(runs: list[Run]) -> np.ndarray:
    """Weights with the best top-1 (ties: lower log-loss) on the runs' selection split (val, else the
    out-of-fold predictions); uniform when they share none. Since each run alone is a candidate, the
    ensemble is never below its best member on that split (measured in-sample: the weights see val)."""
    split = next((s for s in ("val", "oof") if all(r.has(s) for r in runs)), None)
    if split is None:
        return np.full(len(runs), 1.0 / len(runs))
    try:
        preds = _aligned(runs, split)
    except ProbesError:
        return np.full(len(runs), 1.0 / len(runs))
    if (preds[0].labels < 0).any():
        return np.full(len(runs), 1.0 / len(runs))
    return choose_weights([p.probs for p in preds], preds[0].labels)


def choose_weights(probs: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """The candidate weights (``_candidates``) whose mix of ``probs`` has the best top-1 on ``y``,
    ties to the lower log-loss."""
    probs = np.stack(probs)
    best, best_key = None, None
    for w in _candidates(len(probs)):
        mix = np.tensordot(w, probs, axes=1)
        key = ((mix.argmax(1) == y).mean(), np.log(np.clip(mix[np.arange(len(y)), y], 1e-30, None)).mean())
        if best_key is None or key > best_key:
            best, best_key = w, key
    return best


def ensemble_predictions(runs: list[Run], split: str, weights: np.ndarray | None = None) -> Predictions:
    """Weighted mean of the runs' calibrated probabilities (``ensemble_weights`` unless given)."""
    preds = _aligned(runs, split)
    weights = ensemble_weights(runs) if weights is None else np.asarray(weights, dtype=np.float64)
    probs = np.tensordot(weights, np.stack([p.probs for p in preds]), axes=1)
    return Predictions(ids=preds[0].ids, probs=probs.astype(np.float32), labels=preds[0].labels)
