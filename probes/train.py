"""probes fit: load features, select a head on val (or K-fold), optionally refit on train+val, save a run."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probes.data import Features, Normalizer, ProbesError, load_features
from probes.metrics import classification_metrics
from probes.runs import Predictions, Run, save_run

HEADS = ("logistic", "mlp")
# Both heads normalise inside (the logistic head whitens, the MLP standardises), so the default adds
# nothing in front; per-feature standardisation cost 0.5-1 point on digits (near-constant border pixels).
DEFAULT_NORM = {"logistic": "none", "mlp": "none"}


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


def make_head(kind: str, *, seed: int, device: str, params: dict[str, Any]):
    from probes.heads import LogisticHead, MLPHead

    if kind not in HEADS:
        raise ProbesError(f"unknown head {kind!r}; expected one of {', '.join(HEADS)}")
    cls = LogisticHead if kind == "logistic" else MLPHead
    try:
        return cls(seed=seed, device=device, **params)
    except TypeError as e:
        raise ProbesError(f"bad parameter for the {kind} head: {e}") from e


def _select(req: FitRequest, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray):
    """(fitted head, selection table, chosen params) using the validation arrays for model selection."""
    if req.sweep:
        from probes.sweep import sweep

        res = sweep(req.head, req.grid or default_grid(req.head), x, y, xv, yv, seed=req.seed, device=req.device,
                    base_params=req.params)
        return res.best_head, res.table, dict(res.best_params)
    head = make_head(req.head, seed=req.seed, device=req.device, params=req.params).fit(x, y, X_val=xv, y_val=yv)
    return head, list(getattr(head, "selection_", [])), head.selected_params()


def default_grid(kind: str) -> dict[str, list[Any]]:
    """16 configurations: regularisation x shrinkage for the logistic head, lr x wd x width for the MLP."""
    if kind == "logistic":
        return {"C": [1e-3, 1e-2, 1e-1, 1.0], "shrink": [0.1, 1.0, 10.0, 1e3]}
    return {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "weight_decay": [1e-4, 1e-2], "hidden": [512, 1024]}


def fit_run(req: FitRequest, *, cache: Path | None = None, runs: Path | None = None) -> FitResult:
    t0 = time.perf_counter()
    if req.head not in HEADS:
        raise ProbesError(f"unknown head {req.head!r}; expected one of {', '.join(HEADS)}")
    reason = streaming_reason(req, cache=cache)
    if reason is not None:
        feats = load_features(list(req.features), cache=cache, splits=("val", "test"))
        out = _fit_streaming(req, feats, reason)
    else:
        feats = load_features(list(req.features), cache=cache)
        train = feats.split("train")
        if len(np.unique(train.labels)) < 2:
            raise ProbesError("the train split needs at least two classes")
        cv = req.cv or "val" not in feats.splits
        labeled = [train.labels] + ([feats.splits["val"].labels] if cv and "val" in feats.splits else [])
        check_train_classes(np.concatenate(labeled), feats.classes)
        if cv:
            out = _fit_cv(req, feats)
        else:
            out = _fit_holdout(req, feats)
        out = (*out[:4], out[4] + ", in memory", *out[5:])
    head, norm, table, chosen, mode, val_metrics, preds = out
    test = feats.splits.get("test")
    if test is not None:
        preds["test"] = Predictions(test.ids, head.predict_proba(norm.transform(test.features)), test.labels)
    metrics = {"val_top1": val_metrics["top1"], "val_top5": val_metrics["top5"], "val_macro_f1": val_metrics["macro_f1"],
               "val_ece": val_metrics["ece"], "val_n": val_metrics["n"], "selection": mode,
               "seconds": time.perf_counter() - t0}
    config = {"features": feats.refs, "head": req.head, "params": {**req.params, **chosen}, "seed": req.seed,
              "normalize": norm.kind, "final": req.final, "cv": req.cv, "sweep": req.sweep, "classes": feats.classes,
              "dim": feats.dim, "request": asdict(req), "created": _now()}
    state = {**{k: v for k, v in head.state_dict().items()}, **norm.state()}
    name = "+".join(s.encoder for s in feats.sets).replace("/", "-").replace(":", "-")[:60] + f"-{req.head}"
    run = save_run(runs or Path("runs"), name=name, head_state=state, config=config, metrics=metrics, predictions=preds)
    return FitResult(run=run, mode=mode, table=table, seconds=time.perf_counter() - t0)


def check_train_classes(labels: np.ndarray, classes: list[str]) -> None:
    """Every class needs a training image: a head never predicts a class it has not seen, and its
    probability columns would no longer line up with the class list (wrong submission categories)."""
    missing = np.setdiff1d(np.arange(len(classes)), labels)
    if len(missing):
        names = ", ".join(repr(classes[i]) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ProbesError(f"{len(missing)} class(es) have no training image: {names} (an empty class folder, or "
                          "all its images failed: see featstore info); add images or remove the class, then extract")


def _now() -> str:
    """Microseconds: runs made in the same second still sort newest first."""
    import datetime as dt

    return dt.datetime.now().isoformat(timespec="microseconds")


def _fit_holdout(req: FitRequest, feats: Features):
    from probes.groups import holdout_note
    train, val = feats.split("train"), feats.split("val")
    if (val.labels < 0).any():
        raise ProbesError("the val split has unlabeled images; it cannot select a head")
    norm = Normalizer(req.normalize or DEFAULT_NORM[req.head]).fit(train.features)
    x, xv = norm.transform(train.features), norm.transform(val.features)
    head, table, chosen = _select(req, x, train.labels, xv, val.labels)
    pv = head.predict_proba(xv)
    val_metrics = classification_metrics(pv, val.labels, feats.classes)
    preds = {"val": Predictions(val.ids, pv, val.labels)}
    mode = ("sweep on val" if req.sweep else "selected on val") + holdout_note(feats)
    if req.final:  # the selected configuration, refit on everything labeled (the seeds gained ~1 point)
        allx = np.concatenate([train.features, val.features])
        norm = Normalizer(norm.kind).fit(allx)
        head = make_head(req.head, seed=req.seed, device=req.device, params={**req.params, **chosen})
        head.fit(norm.transform(allx), np.concatenate([train.labels, val.labels]))
        mode += ", refit on train+val"
    return head, norm, table, chosen, mode, val_metrics, preds


def _fit_streaming(req: FitRequest, feats: Features, reason: str):
    """Train over the memory budget: the head reads the train shards block by block (fp16 on disk, fp32
    compute; the logistic head in passes, the MLP in shuffled windows); val and test are loaded (small)."""
    from probes.blocks import array_blocks, chain_blocks, feature_set_blocks
    from probes.streaming import StreamingLogisticHead
    from probes.streaming_mlp import StreamingMLPHead

    hint = "raise the budget (--memory-gb / PROBES_MEMORY_GB)"
    unsupported = [name for name, on in (("--cv", req.cv),
                                         ("several feature sets", len(req.features) > 1),
                                         (f"--normalize {req.normalize}", req.normalize not in (None, "none")))
                   if on]
    if unsupported:
        raise ProbesError(f"{reason}: streaming does not support {', '.join(unsupported)}; {hint}")
    if "val" not in feats.splits:
        raise ProbesError(f"{reason}: streaming selects the head on a val split, and there is none; {hint}")
    val = feats.split("val")
    if (val.labels < 0).any():
        raise ProbesError("the val split has unlabeled images; it cannot select a head")
    cls = StreamingLogisticHead if req.head == "logistic" else StreamingMLPHead
    try:
        head = cls(seed=req.seed, device=req.device, **req.params)
    except TypeError as e:
        raise ProbesError(f"bad parameter for the streaming {req.head} head: {e}") from e
    train = feature_set_blocks(feats.sets[0], "train")
    check_train_classes(train.labels, feats.classes)
    try:
        if req.sweep:
            from probes.sweep import sweep_blocks

            res = sweep_blocks(req.head, req.grid or default_grid(req.head), train, val.features, val.labels,
                               seed=req.seed, device=req.device, base_params=req.params)
            head, table, chosen = res.best_head, res.table, dict(res.best_params)
        else:
            head.fit_blocks(train, X_val=val.features, y_val=val.labels)
            table, chosen = list(getattr(head, "selection_", [])), head.selected_params()
    except ValueError as e:
        raise ProbesError(f"streaming fit: {e}") from e
    pv = head.predict_proba(val.features)
    val_metrics = classification_metrics(pv, val.labels, feats.classes)
    preds = {"val": Predictions(val.ids, pv, val.labels)}
    mode = (f"{'sweep' if req.sweep else 'selected'} on val, streaming ({reason}; "
            f"{head.n_passes_} passes over train)")
    if req.final:  # the chosen configuration, refit on the train shards followed by val
        head = cls(**head.final_params())
        head.fit_blocks(chain_blocks(train, array_blocks(val.features, val.labels)))
        mode += f", refit on train+val ({head.n_passes_} passes)"
    return head, Normalizer("none"), table, chosen, mode, val_metrics, preds


def _fit_cv(req: FitRequest, feats: Features):
    """Stratified K-fold over all labeled images: out-of-fold metrics, then one fit on all of them."""
    from probes.groups import grouped_folds

    parts = [feats.split("train")] + ([feats.splits["val"]] if "val" in feats.splits else [])
    x = np.concatenate([p.features for p in parts])
    y = np.concatenate([p.labels for p in parts])
    ids = np.concatenate([p.ids for p in parts])
    k = req.cv or 5
    counts = np.bincount(y) if len(y) else np.zeros(1, dtype=int)
    smallest = int(counts[counts > 0].min()) if counts.any() else 0  # classes without images are not folded
    if k < 2 or smallest < k:
        raise ProbesError(f"--cv {k}: needs k >= 2 and at least k images in every class (smallest class has {smallest})")
    oof = np.zeros((len(y), len(feats.classes)), dtype=np.float32)
    chosen_all, table = [], []
    folds, grouping = grouped_folds(feats, [p for p in ("train", "val") if p in feats.splits], y, k=k, seed=req.seed)
    for fold, (tr, va) in enumerate(folds):
        norm = Normalizer(req.normalize or DEFAULT_NORM[req.head]).fit(x[tr])
        head, t, chosen = _select(req, norm.transform(x[tr]), y[tr], norm.transform(x[va]), y[va])
        oof[va] = head.predict_proba(norm.transform(x[va]))
        chosen_all.append(chosen)
        table += [dict(row, fold=fold) for row in t]
    chosen = _consensus(chosen_all)
    norm = Normalizer(req.normalize or DEFAULT_NORM[req.head]).fit(x)
    head = make_head(req.head, seed=req.seed, device=req.device, params={**req.params, **chosen}).fit(norm.transform(x), y)
    metrics = classification_metrics(oof, y, feats.classes)
    mode = f"{k}-fold CV ({'no val split' if 'val' not in feats.splits else 'train+val'}; {grouping}), refit on all"
    return head, norm, table, chosen, mode, metrics, {"oof": Predictions(ids, oof, y)}


def _consensus(chosen: list[dict[str, Any]]) -> dict[str, Any]:
    """Per parameter: the median of numbers (regularisation strengths vary smoothly), else the most common value."""
    out: dict[str, Any] = {}
    for key in chosen[0] if chosen else []:
        vals = [c[key] for c in chosen]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            med = float(np.median(vals))
            out[key] = type(vals[0])(med) if isinstance(vals[0], int) else med
        else:
            out[key] = Counter(map(repr, vals)).most_common(1)[0][0]
            out[key] = next(v for v in vals if repr(v) == out[key])
    return out
