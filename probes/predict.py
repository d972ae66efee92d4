"""Test predictions of a run or an ensemble, checked against the store, turned into a submission file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featstore.store import open_feature_set
from probes.data import ProbesError
from probes.ensemble import ensemble_predictions
from probes.runs import Predictions, Run, resolve_run
from probes.submit import write_submission


def test_predictions(run_id: str | None, *, ensemble: list[str] | None, runs: Path | None) -> tuple[list[Run], Predictions]:
    chosen = [resolve_run(r, runs=runs) for r in ensemble] if ensemble else [resolve_run(run_id, runs=runs)]
    if ensemble and run_id:
        raise ProbesError("give either a RUN or --ensemble RUN ..., not both")
    for r in chosen:
        if not r.has("test"):
            raise ProbesError(f"run {r.id} has no test predictions: its feature sets have no test split "
                              "(featstore extract --splits test, then probes fit again)")
    preds = ensemble_predictions(chosen, "test") if len(chosen) > 1 else chosen[0].predictions("test")
    return chosen, preds


def submission_for(run_id: str | None, *, ensemble: list[str] | None, out: Path, fmt: str, sample: Path | None,
                   runs: Path | None, cache: Path | None) -> tuple[Path, int]:
    """Write the CSV; the test image count and the CSV order come from the store's manifest, not from paths."""
    chosen, preds = test_predictions(run_id, ensemble=ensemble, runs=runs)
    ref = chosen[0].config["features"][0]
    fs = open_feature_set(ref["key"], cache=cache)
    store_ids = fs.index("test").ids
    if not np.array_equal(store_ids, preds.ids):
        raise ProbesError(f"the store's test split ({len(store_ids)} images) changed since run {chosen[0].id} "
                          f"({len(preds.ids)} predictions); refit the run")
    path = write_submission(preds, out, n_classes=len(chosen[0].config["classes"]), n_test=len(store_ids), fmt=fmt,
                            test_order=fs.dataset.get("test_order"), sample=sample)
    return path, len(store_ids)


@dataclass(frozen=True)
class Prediction:
    probabilities: Path
    submission: Path
    n: int


def predict_run(run_id: str, *, features: str | None, split: str, out: Path, fmt: str, runs: Path | None,
                cache: Path | None) -> Prediction:
    """Apply a saved run to ``split`` of a feature set (the run's own by default): write the calibrated
    probabilities and a submission. The set must have the run's classes and dim."""
    from probes.data import load_features
    from probes.runs import load_run

    run = resolve_run(run_id, runs=runs)
    refs = [f.strip() for f in features.split(",")] if features else [r["key"] for r in run.config["features"]]
    tta = bool(run.config.get("request", {}).get("tta", False))  # a run fitted with --tta predicts the same way
    feats = load_features(refs, cache=cache, splits=(split,), tta=tta and split != "train")
    if feats.classes != run.config["classes"]:
        raise ProbesError(f"run {run.id} was fitted on {len(run.config['classes'])} classes; {','.join(refs)} has "
                          f"{len(feats.classes)} (or another order): a head only applies to its own classes")
    if feats.dim != run.config["dim"]:
        raise ProbesError(f"run {run.id} expects {run.config['dim']} features per image; {','.join(refs)} has {feats.dim}")
    data = feats.split(split)
    preds = Predictions(data.ids, load_run(run).predict_proba(data.features), data.labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    probs_path = out / f"probabilities-{split}.npz"
    np.savez(probs_path, ids=np.asarray(preds.ids, dtype=str), probs=preds.probs, labels=preds.labels,
             classes=np.asarray(feats.classes, dtype=str))
    sub = write_submission(preds, out / "submission.csv", n_classes=len(feats.classes), n_test=len(preds.ids),
                           fmt=fmt, test_order=feats.dataset.get("test_order") if split == "test" else None)
    return Prediction(probs_path, sub, len(preds.ids))
