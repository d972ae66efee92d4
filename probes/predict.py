"""Test predictions of a run or an ensemble, checked against the store, turned into a submission file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featstore.store import open_feature_set
from probes.data import ProbesError
from probes.ensemble import ensemble_predictions
from probes.runs import Predictions, Run, resolve_run
from probes.submit import build_table, write_submission, write_table
from probes.testsplit import TestSplit, split_record


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


@dataclass(frozen=True)
class Submission:
    path: Path
    n: int
    what: str
    runs: list[tuple[str, str, float]]  # (run id, selection kind, its val/OOF top-1)
    notes: list[str]


def run_test_split(run: Run, *, cache: Path | None) -> TestSplit:
    """The run's own record (runs since issue 12 keep it, so deleting the set loses nothing), else its set's."""
    if run.config.get("test"):
        return TestSplit.from_dict(run.config["test"])
    fs = open_feature_set(run.config["features"][0]["key"], cache=cache)
    store_ids = fs.index("test").ids
    if not np.array_equal(store_ids, run.predictions("test").ids):
        raise ProbesError(f"the store's test split ({len(store_ids)} images) changed since run {run.id}; refit the run")
    return split_record(fs.dataset, store_ids)


def submission_for(run_id: str | None, *, ensemble: list[str] | None, out: Path, fmt: str | None, sample: Path | None,
                   runs: Path | None, cache: Path | None, labels: str | None = None) -> Submission:
    """Write the CSV from the run's saved test predictions and test-split record; the sample, when given, is the template."""
    chosen, preds = test_predictions(run_id, ensemble=ensemble, runs=runs)
    test = run_test_split(chosen[0], cache=cache)
    table = build_table(preds, classes=list(chosen[0].config["classes"]), test=test, fmt=fmt, sample=sample,
                        labels=labels)
    path = write_table(table, out)
    used = [(r.id, str(r.metrics.get("selection", "")), float(r.metrics.get("val_top1", float("nan")))) for r in chosen]
    return Submission(path, len(table.rows), table.what, used, table.notes)


@dataclass(frozen=True)
class Prediction:
    probabilities: Path
    submission: Path | None  # None: the ids were generated at import, they name no file
    n: int


def predict_run(run_id: str, *, features: str | None, split: str, out: Path, fmt: str | None, runs: Path | None,
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
    test = split_record(feats.dataset, data.ids) if split == "test" else TestSplit(layout="folders")
    sub = None if test.generated_ids else write_submission(preds, out / "submission.csv", classes=feats.classes,
                                                           test=test, fmt=fmt)
    return Prediction(probs_path, sub, len(preds.ids))
