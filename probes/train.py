"""probes fit: load features, select a head on val (or K-fold), optionally refit on train+val, save a run."""

from __future__ import annotations

import inspect
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probes.calibration import apply_temperature, choose_temperature, log_probabilities
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
    text: str | None = None  # class-name text embeddings for text-aware heads: a text set name or an .npz
    tta: bool = False  # val/test vectors averaged over the stored views (e.g. orig + hflip)
    train_views: bool = False  # every stored view of a train image is a train row (grouped in CV)


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
    bf16 whitened copy (twice: row- and column-major, ``Scratch.transposed``) and a few [rows, classes]
    float32 logits/probabilities (bench/probe_scale.py measured 6.4-7.7 KB per row at dim 768, 100
    classes, before the column-major copy added 1.5; this gives 9.3). MLP: the float32 train as
    loaded, its standardised copy and the loader's temporaries (measured 8.9 KB per row at dim 768
    between 200k and 1M rows; this gives 9.2)."""
    if head == "logistic":
        return rows * (10 * dim + 16 * classes)
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
    feats = load_features(list(req.features), cache=cache, splits=("val", "test") if reason else ("train", "val", "test"),
                          tta=req.tta, train_views=req.train_views)
    cv = req.cv or "val" not in feats.splits
    fit_kw = _text_kwargs(req, entry, feats, cache=cache)
    if reason is not None:
        _check_streamable(req, feats, reason)
    if cv:
        outcome = _fit_cv(req, entry, feats, groups, fit_kw)
    else:
        outcome = _fit_on_val(req, entry, feats, reason, fit_kw)
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
                                         (f"--normalize {req.normalize}", req.normalize not in (None, "none")),
                                         ("--train-views", req.train_views))
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


def _text_kwargs(req: FitRequest, entry: HeadEntry, feats: Features, *, cache: Path | None) -> dict[str, Any]:
    """``text=`` for heads whose ``fit`` takes class-name embeddings (``--text``), checked against the classes."""
    takes_text = "text" in inspect.signature(entry.cls.fit).parameters
    if req.text is None:
        if getattr(entry.cls, "needs_text", False):
            raise ProbesError(f"the {req.head} head needs class-name text embeddings: --text SET (featstore text) "
                              "or --text FILE.npz (classes, embeddings [K, D] or [K, T, D])")
        return {}
    if not takes_text:
        raise ProbesError(f"the {req.head} head uses no text embeddings; drop --text (text-aware heads: "
                          "zeroshot, clap, lpp, tip, wise, zslogistic)")
    from probes.fewshot.textsource import resolve_text

    return {"text": resolve_text(req.text, cache=cache, classes=feats.classes)}


def _val_kwargs(entry: HeadEntry, xv: np.ndarray, yv: np.ndarray) -> dict[str, Any]:
    """The val split in the form the head's ``fit`` takes it: ``X_val``/``y_val``, ``val=(X, y)``, or not at all."""
    params = inspect.signature(entry.cls.fit).parameters
    if "X_val" in params:
        return {"X_val": xv, "y_val": yv}
    return {"val": (xv, yv)} if "val" in params else {}


def _fit_head(req: FitRequest, entry: HeadEntry, source: TrainSource, xv: np.ndarray, yv: np.ndarray,
              params: dict[str, Any] | None = None, fit_kw: dict[str, Any] | None = None
              ) -> tuple[Any, list[dict[str, Any]]]:
    """Select and fit one head on ``source``, choosing on ``(xv, yv)``: the sweep, or one fit."""
    X, y = (source, None) if entry.streams else (source.X, source.labels)
    try:
        if req.sweep:
            from probes.sweep import sweep

            res = sweep(req.head, req.grid or entry.grid, X, y, xv, yv, base_params=head_params(req, params),
                        fit_kw=fit_kw)
            return res.best_head, res.table
        head = make_head(req, params)
        head.fit(X, y, **_val_kwargs(entry, xv, yv), **(fit_kw or {}))
    except ValueError as e:
        raise ProbesError(f"{req.head} fit: {e}") from e
    selection = getattr(head, "selection_", [])
    return head, list(selection) if isinstance(selection, list) else []


def _chosen(req: FitRequest, head: Any) -> dict[str, Any]:
    """What selection settled (refit parameters that differ from the request's): saved and reused."""
    refit = head.refit_params() if hasattr(head, "refit_params") else head.get_params()
    base = make_head(req).get_params()
    return {k: v for k, v in refit.items() if base.get(k) != v}


def _fit_on_val(req: FitRequest, entry: HeadEntry, feats: Features, reason: str | None,
                fit_kw: dict[str, Any]) -> _Outcome:
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
    head, table = _fit_head(req, entry, source, xv, val.labels, fit_kw=fit_kw)
    chosen = _chosen(req, head)
    logp = log_probabilities(head, xv)
    temperature = choose_temperature(logp, val.labels)
    raw_ece = expected_calibration_error(np.exp(logp), val.labels)
    preds = Predictions(val.ids, apply_temperature(logp, temperature), val.labels)
    mode = f"{'sweep' if req.sweep else 'selected'} on val, {place}"
    if reason is None:  # too big to audit on the way when streaming; the line after fit says so
        from probes.groups import holdout_note

        mode += holdout_note(feats)
    if source.streamed and hasattr(head, "n_passes_"):
        mode += f"; {head.n_passes_} passes over train"
    if req.final:  # the chosen configuration refit on train + val; the temperature found on val carries over
        if source.streamed:
            source = source.with_rows(val.features, val.labels)
        else:
            allx = np.concatenate([feats.split("train").features, val.features])
            norm = Normalizer(norm.kind).fit(allx)
            source = ArraySource(norm.transform(allx), np.concatenate([feats.split("train").labels, val.labels]))
        head = _refit(req, entry, head, source, fit_kw)
        mode += ", refit on train+val"
    return _Outcome(Probe(head, norm, temperature), table, chosen, mode, "val", preds, raw_ece)


def _refit(req: FitRequest, entry: HeadEntry, head: Any, source: TrainSource, fit_kw: dict[str, Any]) -> Any:
    params = head.refit_params() if hasattr(head, "refit_params") else head.get_params()
    again = create_head(req.head, **params)
    return again.fit(source) if entry.streams else again.fit(source.X, source.labels, **fit_kw)


def _fit_cv(req: FitRequest, entry: HeadEntry, feats: Features, groups: np.ndarray | None,
            fit_kw: dict[str, Any]) -> _Outcome:
    """Stratified (grouped) K-fold over all labeled images: out-of-fold predictions choose the
    temperature and give the metrics, then one fit on all of them with the consensus parameters."""
    parts = [feats.split("train")] + ([feats.splits["val"]] if "val" in feats.splits else [])
    x = np.concatenate([p.features for p in parts])
    y = np.concatenate([p.labels for p in parts])
    ids = np.concatenate([p.ids for p in parts])
    keys = np.concatenate([np.char.add(f"{name}/", p.ids.astype(str)) for name, p in
                           zip(("train", "val"), parts)])  # one key per image: its views share it
    _, first, image = np.unique(keys, return_index=True, return_inverse=True)
    original = np.sort(first)  # each image's first row: the original view, scored out of fold
    check_train_classes(y, feats.classes)
    k = req.cv or 5
    counts = np.bincount(y)
    smallest = int(counts[counts > 0].min())  # classes without images are not folded
    if k < 2 or smallest < k:
        raise ProbesError(f"--cv {k}: needs k >= 2 and at least k images in every class (smallest class has {smallest})")
    if groups is None:  # by default each duplicate cluster stays inside one fold (featstore audit)
        from probes.groups import fold_groups

        groups, grouping = fold_groups(feats, [p for p in ("train", "val") if p in feats.splits], y, k=k)
    else:
        grouping = "folds grouped by the groups given"
    if len(original) < len(y):  # --train-views: all views of an image in one fold (with its duplicates)
        last = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]  # where duplicate groups were set
        groups = (groups if groups is not None else np.arange(len(y)))[last][image]
        grouping += f"; the {len(y) // len(original)} views of each image kept in one fold"
    try:
        folds = make_folds(y, n_splits=k, groups=groups, seed=req.seed)
    except ValueError as e:
        raise ProbesError(f"--cv {k}: {e}") from e
    oof = np.zeros((len(y), len(feats.classes)), dtype=np.float32)
    chosen_all, table = [], []
    kind = req.normalize or DEFAULT_NORM
    nested, fold_rows = True, []
    for fold, (tr, va) in enumerate(folds):  # 1. each fold's selection, on an inner split of its training rows
        norm = Normalizer(kind).fit(x[tr])
        head, t, inner = _select_in_fold(req, entry, norm.transform(x[tr]), y[tr],
                                         None if groups is None else groups[tr], (norm.transform(x[va]), y[va]), fit_kw)
        nested &= inner
        chosen_all.append(_chosen(req, head))
        table += [dict(row, fold=fold) for row in t]
        fold_rows.append((tr, va, norm))
    chosen = _consensus(chosen_all)
    for tr, va, norm in fold_rows:  # 2. the consensus configuration, fit per fold, scored on the held-out fold
        fitted = make_head(req, chosen).fit(norm.transform(x[tr]), y[tr], **fit_kw)
        oof[va] = log_probabilities(fitted, norm.transform(x[va]))
    norm = Normalizer(kind).fit(x)
    head = make_head(req, chosen)
    head = head.fit(norm.transform(x), y, **fit_kw)
    oof, y, ids = oof[original], y[original], ids[original]
    temperature = choose_temperature(oof, y)
    preds = Predictions(ids, apply_temperature(oof, temperature), y)
    grouping += "; selected on an inner split of each fold's training rows" if nested else \
        "; some folds too small for an inner split: their heads selected on the held-out fold (optimistic)"
    mode = f"{k}-fold CV ({'no val split' if 'val' not in feats.splits else 'train+val'}; {grouping}), refit on all"
    return _Outcome(Probe(head, norm, temperature), table, chosen, mode, "oof", preds,
                    expected_calibration_error(np.exp(oof), y))


def _select_in_fold(req: FitRequest, entry: HeadEntry, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
                    held_out: tuple[np.ndarray, np.ndarray], fit_kw: dict[str, Any]
                    ) -> tuple[Any, list[dict[str, Any]], bool]:
    """One fold's selection without the fold's held-out rows: a head that selects on val does so on an
    inner stratified (grouped) split of the fold's training rows. Choosing on the scored fold made the
    out-of-fold estimate optimistic (up to 9 points on 160 images). Returns (head, rows, nested?)."""
    if not (entry.uses_val or req.sweep):
        return make_head(req), [], True
    smallest = int(np.bincount(y)[np.unique(y)].min())
    try:
        inner_tr, inner_va = make_folds(y, n_splits=min(5, smallest), groups=groups, seed=req.seed)[0]
    except ValueError:  # a class with a single training row in this fold: select on the held-out rows
        head, table = _fit_head(req, entry, ArraySource(x, y), *held_out, fit_kw=fit_kw)
        return head, table, False
    head, table = _fit_head(req, entry, ArraySource(x[inner_tr], y[inner_tr]), x[inner_va], y[inner_va], fit_kw=fit_kw)
    return head, table, True


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


