"""probes fit: load features, select a head on val (or K-fold), optionally refit on train+val, save a run."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probes.calibration import apply_temperature, fit_temperature, log_probabilities
from probes.data import Features, Normalizer, ProbesError, load_features
from probes.folds import make_folds
from probes.heads.registry import HeadEntry, create_head, get_head
from probes.metrics import classification_metrics, expected_calibration_error
from probes.probe import Probe
from probes.runs import Predictions, Run, default_runs, save_run
from probes.sources.base import TrainSource
from probes.sources.memory import ArraySource
from probes.testsplit import split_record

# The built-in heads normalise inside (the logistic head whitens, the MLP standardises), so the default adds
# nothing in front; per-feature standardisation cost 0.5-1 point on digits (near-constant border pixels).
DEFAULT_NORM = "none"


@dataclass(frozen=True)
class FitRequest:
    """Everything `probes fit` was asked; saved in the run's config.json."""

    features: tuple[str, ...]
    head: str = "logistic"
    sweep: bool = False
    final: bool = False
    cv: int | None = None
    seed: int = 0
    normalize: str | None = None
    device: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None
    memory_budget_gb: float | None = None  # None: $PROBES_MEMORY_GB, else DEFAULT_MEMORY_GB


DEFAULT_MEMORY_GB = 4.0


def memory_budget_bytes(req: FitRequest) -> float:
    """The memory an in-memory fit may use (``in_memory_bytes``): the request's, else $PROBES_MEMORY_GB, else 4 GB."""
    gb = req.memory_budget_gb
    if gb is None:
        env = os.environ.get("PROBES_MEMORY_GB", "").strip()
        try:
            gb = float(env) if env else DEFAULT_MEMORY_GB
        except ValueError:
            raise ProbesError(f"PROBES_MEMORY_GB must be a number of GB, got {env!r}") from None
    if not gb > 0:
        raise ProbesError(f"the memory budget must be positive, got {gb!r} GB")
    return gb * 1e9


def streaming_reason(req: FitRequest, *, cache: Path | None = None) -> str | None:
    """Why the train split must stream (it is over the memory budget), or None when it fits in memory.
    Decided from the manifests (row counts and dims), before anything is loaded."""
    from featstore.store import open_feature_set

    if not req.features:
        return None
    sets = [open_feature_set(r, cache=cache) for r in req.features]
    rows, dim, k = sets[0].count("train"), sum(s.dim for s in sets), len(sets[0].classes)
    need, budget = in_memory_bytes(req.head, rows=rows, dim=dim, classes=k), memory_budget_bytes(req)
    if need <= budget:
        return None
    return (f"train {rows} rows x {dim}: an in-memory {req.head} fit needs ~{need / 1e9:.3g} GB "
            f"> budget {budget / 1e9:.3g} GB")


def in_memory_bytes(head: str, *, rows: int, dim: int, classes: int) -> int:
    """What an in-memory fit holds at its peak, beyond the interpreter. Logistic: the float32 train, its
    bf16 whitened copy and a few [rows, classes] float32 logits/probabilities (bench/probe_scale.py
    measured 6.4-7.7 KB per row at dim 768, 100 classes; this gives 7.7). MLP: the float32 train as
    loaded, its standardised copy and the loader's temporaries (measured 8.9 KB per row at dim 768
    between 200k and 1M rows; this gives 9.2)."""
    if head == "logistic":
        return rows * (8 * dim + 16 * classes)
    return rows * 12 * dim


@dataclass
class FitResult:
    run: Run
    mode: str  # how selection was done, said to the user
    table: list[dict[str, Any]]  # selection / sweep table
    seconds: float


@dataclass
class _Outcome:
    """What a selection produced: the probe to save and what is said about it."""

    probe: Probe
    table: list[dict[str, Any]]
    chosen: dict[str, Any]
    mode: str
    split: str  # the selection split: "val" or "oof"
    preds: Predictions  # calibrated probabilities on the selection split
    raw_ece: float


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("featstore-probes")
    except PackageNotFoundError:
        return "unknown"


def make_head(req: FitRequest, params: dict[str, Any] | None = None) -> Any:
    """The request's head, its parameters checked; errors become one-line ProbesErrors."""
    try:
        return create_head(req.head, **head_params(req, params))
    except (TypeError, ValueError) as e:
        raise ProbesError(f"bad parameter for the {req.head} head: {e}") from e


def head_params(req: FitRequest, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's parameters over its seed and device (for heads that take them)."""
    known = get_head(req.head).cls().get_params()
    common = {k: v for k, v in (("seed", req.seed), ("device", req.device)) if k in known}
    return {**common, **req.params, **(params or {})}


def fit_run(req: FitRequest, *, cache: Path | None = None, runs: Path | None = None,
            groups: np.ndarray | None = None) -> FitResult:
    """Load the features, select and fit the head, calibrate it, save the run.

    The train rows are an ``ArraySource`` while an in-memory fit stays under the memory budget and a
    streamed ``BlockSource`` above it (heads registered with ``streams=True``; the others are always
    fit in memory). ``groups``: one id per labeled row used by ``--cv`` (train rows, then val rows
    when val is folded in); CV folds then never split a group (``folds.make_folds``).
    """
    t0 = time.perf_counter()
    try:
        entry = get_head(req.head)
    except ValueError as e:
        raise ProbesError(str(e)) from None
    make_head(req)  # parameters checked before anything is loaded
    reason = streaming_reason(req, cache=cache) if entry.streams else None
    feats = load_features(list(req.features), cache=cache, splits=("val", "test") if reason else ("train", "val", "test"))
    cv = req.cv or "val" not in feats.splits
    if reason is not None:
        _check_streamable(req, feats, reason)
    if cv:
        outcome = _fit_cv(req, entry, feats, groups)
    else:
        outcome = _fit_on_val(req, entry, feats, reason)
    probe = outcome.probe
    preds = {outcome.split: outcome.preds}
    test = feats.splits.get("test")
    if test is not None:
        preds["test"] = Predictions(test.ids, probe.predict_proba(test.features), test.labels)
    sel = outcome.preds
    m = classification_metrics(sel.probs, sel.labels, feats.classes)
    metrics = {"val_top1": m["top1"], "val_top5": m["top5"], "val_macro_f1": m["macro_f1"], "val_ece": m["ece"],
               "val_ece_uncalibrated": outcome.raw_ece, "temperature": probe.temperature, "val_n": m["n"],
               "selection": outcome.mode, "seconds": time.perf_counter() - t0}
    params = probe.head.get_params()
    config = {"features": feats.refs, "head": req.head, "params": params, "selected": outcome.chosen,
              "seed": req.seed, "normalize": probe.normalizer.kind, "final": req.final, "cv": req.cv, "sweep": req.sweep,
              "grid": (req.grid or entry.grid) if req.sweep else None, "temperature": probe.temperature,
              "classes": feats.classes, "dim": feats.dim, "request": asdict(req), "version": package_version(),
              "groups": groups is not None, "created": _now(),
              "test": split_record(feats.dataset, test.ids).to_dict() if test is not None else None}
    state = {**_head_state(probe.head), **probe.normalizer.state()}
    name = "+".join(s.encoder for s in feats.sets).replace("/", "-").replace(":", "-")[:60] + f"-{req.head}"
    run = save_run(runs or default_runs(), name=name, head_state=state, config=config, metrics=metrics, predictions=preds)
    return FitResult(run=run, mode=outcome.mode, table=outcome.table, seconds=time.perf_counter() - t0)


def _head_state(head: Any) -> dict[str, Any]:
    """The head's tensors; a registered head without ``state_dict`` saves none (load_run refuses it)."""
    return dict(head.state_dict()) if hasattr(head, "state_dict") else {}


def _check_streamable(req: FitRequest, feats: Features, reason: str) -> None:
    hint = "raise the budget (--memory-gb / PROBES_MEMORY_GB)"
    unsupported = [name for name, on in (("--cv", req.cv),
                                         ("several feature sets", len(req.features) > 1),
                                         (f"--normalize {req.normalize}", req.normalize not in (None, "none")))
                   if on]
    if unsupported:
        raise ProbesError(f"{reason}: streaming does not support {', '.join(unsupported)}; {hint}")
    if "val" not in feats.splits:
        raise ProbesError(f"{reason}: streaming selects the head on a val split, and there is none; {hint}")


def check_train_classes(labels: np.ndarray, classes: list[str]) -> None:
    """Every class needs a training image: a head never predicts a class it has not seen, and its
    probability columns would no longer line up with the class list (wrong submission categories)."""
    if len(np.unique(labels)) < 2:
        raise ProbesError("the train split needs at least two classes")
    missing = np.setdiff1d(np.arange(len(classes)), labels)
    if len(missing):
        names = ", ".join(repr(classes[i]) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ProbesError(f"{len(missing)} class(es) have no training image: {names} (an empty class folder, or "
                          "all its images failed: see featstore info); add images or remove the class, then extract")


def _now() -> str:
    """Microseconds: runs made in the same second still sort newest first."""
    import datetime as dt

    return dt.datetime.now().isoformat(timespec="microseconds")


def _fit_head(req: FitRequest, entry: HeadEntry, source: TrainSource, xv: np.ndarray, yv: np.ndarray,
              params: dict[str, Any] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """Select and fit one head on ``source``, choosing on ``(xv, yv)``: the sweep, or one fit."""
    X, y = (source, None) if entry.streams else (source.X, source.labels)
    try:
        if req.sweep:
            from probes.sweep import sweep

            res = sweep(req.head, req.grid or entry.grid, X, y, xv, yv, base_params=head_params(req, params))
            return res.best_head, res.table
        head = make_head(req, params)
        head.fit(X, y, X_val=xv, y_val=yv) if entry.uses_val else head.fit(X, y)
    except ValueError as e:
        raise ProbesError(f"{req.head} fit: {e}") from e
    return head, list(getattr(head, "selection_", []))


def _chosen(req: FitRequest, head: Any) -> dict[str, Any]:
    """What selection settled (refit parameters that differ from the request's): saved and reused."""
    refit = head.refit_params() if hasattr(head, "refit_params") else head.get_params()
    base = make_head(req).get_params()
    return {k: v for k, v in refit.items() if base.get(k) != v}


def _fit_on_val(req: FitRequest, entry: HeadEntry, feats: Features, reason: str | None) -> _Outcome:
    val = feats.split("val")
    if (val.labels < 0).any():
        raise ProbesError("the val split has unlabeled images; it cannot select a head")
    if reason is not None:  # over the memory budget: the head reads the train shards block by block
        from probes.sources.blocks import feature_set_blocks
        from probes.sources.store import BlockSource

        source: TrainSource = BlockSource(feature_set_blocks(feats.sets[0], "train"), feats.dim)
        norm = Normalizer("none")
        place = f"streaming ({reason})"
    else:
        train = feats.split("train")
        norm = Normalizer(req.normalize or DEFAULT_NORM).fit(train.features)
        source = ArraySource(norm.transform(train.features), train.labels)
        place = "in memory"
    check_train_classes(source.labels, feats.classes)
    xv = norm.transform(val.features)
    head, table = _fit_head(req, entry, source, xv, val.labels)
    chosen = _chosen(req, head)
    logp = log_probabilities(head, xv)
    temperature = fit_temperature(logp, val.labels)
    raw_ece = expected_calibration_error(np.exp(logp), val.labels)
    preds = Predictions(val.ids, apply_temperature(logp, temperature), val.labels)
    mode = f"{'sweep' if req.sweep else 'selected'} on val, {place}"
    if source.streamed and hasattr(head, "n_passes_"):
        mode += f"; {head.n_passes_} passes over train"
    if req.final:  # the chosen configuration refit on train + val; the temperature found on val carries over
        if source.streamed:
            source = source.with_rows(val.features, val.labels)
        else:
            allx = np.concatenate([feats.split("train").features, val.features])
            norm = Normalizer(norm.kind).fit(allx)
            source = ArraySource(norm.transform(allx), np.concatenate([feats.split("train").labels, val.labels]))
        head = _refit(req, entry, head, source)
        mode += ", refit on train+val"
    return _Outcome(Probe(head, norm, temperature), table, chosen, mode, "val", preds, raw_ece)


def _refit(req: FitRequest, entry: HeadEntry, head: Any, source: TrainSource) -> Any:
    params = head.refit_params() if hasattr(head, "refit_params") else head.get_params()
    again = create_head(req.head, **params)
    return again.fit(source) if entry.streams else again.fit(source.X, source.labels)


def _fit_cv(req: FitRequest, entry: HeadEntry, feats: Features, groups: np.ndarray | None) -> _Outcome:
    """Stratified (grouped) K-fold over all labeled images: out-of-fold predictions choose the
    temperature and give the metrics, then one fit on all of them with the consensus parameters."""
    parts = [feats.split("train")] + ([feats.splits["val"]] if "val" in feats.splits else [])
    x = np.concatenate([p.features for p in parts])
    y = np.concatenate([p.labels for p in parts])
    ids = np.concatenate([p.ids for p in parts])
    check_train_classes(y, feats.classes)
    k = req.cv or 5
    counts = np.bincount(y)
    smallest = int(counts[counts > 0].min())  # classes without images are not folded
    if k < 2 or smallest < k:
        raise ProbesError(f"--cv {k}: needs k >= 2 and at least k images in every class (smallest class has {smallest})")
    try:
        folds = make_folds(y, n_splits=k, groups=groups, seed=req.seed)
    except ValueError as e:
        raise ProbesError(f"--cv {k}: {e}") from e
    oof = np.zeros((len(y), len(feats.classes)), dtype=np.float32)
    chosen_all, table = [], []
    kind = req.normalize or DEFAULT_NORM
    for fold, (tr, va) in enumerate(folds):
        norm = Normalizer(kind).fit(x[tr])
        head, t = _fit_head(req, entry, ArraySource(norm.transform(x[tr]), y[tr]), norm.transform(x[va]), y[va])
        oof[va] = log_probabilities(head, norm.transform(x[va]))
        chosen_all.append(_chosen(req, head))
        table += [dict(row, fold=fold) for row in t]
    chosen = _consensus(chosen_all)
    norm = Normalizer(kind).fit(x)
    head = make_head(req, chosen)
    head = head.fit(norm.transform(x), y)
    temperature = fit_temperature(oof, y)
    preds = Predictions(ids, apply_temperature(oof, temperature), y)
    mode = f"{k}-fold CV ({'no val split' if 'val' not in feats.splits else 'train+val'}"
    mode += f"{', grouped' if groups is not None else ''}), refit on all"
    return _Outcome(Probe(head, norm, temperature), table, chosen, mode, "oof", preds,
                    expected_calibration_error(np.exp(oof), y))


def _consensus(chosen: list[dict[str, Any]]) -> dict[str, Any]:
    """Per parameter: the median of numbers (regularisation strengths vary smoothly), else the most common value."""
    out: dict[str, Any] = {}
    for key in chosen[0] if chosen else []:
        vals = [c.get(key) for c in chosen]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            med = float(np.median(vals))
            out[key] = int(round(med)) if isinstance(vals[0], int) else med
        else:
            common = Counter(map(repr, vals)).most_common(1)[0][0]
            out[key] = next(v for v in vals if repr(v) == common)
    return out


