"""runs/<run-id>/: head.safetensors, config.json, metrics.json and per-split probabilities; written whole."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.data import ProbesError


def default_runs() -> Path:
    return Path(os.environ.get("PROBES_RUNS") or "runs")  # set but empty: the default


@dataclass(frozen=True)
class Predictions:
    """One split's class probabilities in the store's id order."""

    ids: np.ndarray  # str
    probs: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64, -1 unlabeled


@dataclass
class Run:
    folder: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def id(self) -> str:
        return self.folder.name

    def predictions(self, split: str) -> Predictions:
        path = self.folder / f"predictions-{split}.npz"
        if not path.exists():
            raise ProbesError(f"run {self.id} has no {split} predictions (the feature sets had no {split} split)")
        with np.load(path, allow_pickle=False) as z:
            return Predictions(ids=z["ids"].astype(object), probs=z["probs"], labels=z["labels"])

    def has(self, split: str) -> bool:
        return (self.folder / f"predictions-{split}.npz").exists()


def save_run(runs: Path, *, name: str, head_state: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any],
             predictions: dict[str, Predictions]) -> Run:
    """Write everything to a temp folder, then rename it to a fresh id: a run is complete or absent."""
    from safetensors.numpy import save_file

    runs = Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(runs)
    tmp = runs / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file({k: np.ascontiguousarray(_np(v)) for k, v in head_state.items()}, str(tmp / "head.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=_jsonable))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_jsonable))
        for split, p in predictions.items():
            np.savez(tmp / f"predictions-{split}.npz", ids=np.asarray(p.ids, dtype=str),
                     probs=p.probs.astype(np.float32), labels=p.labels.astype(np.int64))
        return Run(_publish(tmp, runs, name), config, metrics)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_temps(runs: Path, *, min_age_s: float = 3600.0) -> None:
    """Temp folders of fits that were killed while saving (a save takes seconds: an hour-old one is litter)."""
    now = time.time()
    for path in runs.glob(".tmp-*"):
        if now - path.stat().st_mtime > min_age_s:
            shutil.rmtree(path, ignore_errors=True)


def _publish(tmp: Path, runs: Path, name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        final = runs / (f"{stamp}-{name}" + (f"-{n}" if n else ""))
        if final.exists():
            continue  # never clobber an earlier run
        try:
            os.rename(tmp, final)
            return final
        except OSError:  # another process took the name between the check and the rename
            continue
    raise ProbesError(f"could not create a run folder in {runs}")


def _np(v: Any) -> np.ndarray:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def list_runs(runs: Path | None = None) -> list[Run]:
    """Complete runs, newest first (temp folders of a run being written are skipped)."""
    runs = Path(runs) if runs else default_runs()
    out = []
    for d in sorted(runs.glob("*/config.json")) if runs.is_dir() else []:
        if d.parent.name.startswith("."):
            continue
        try:
            out.append(Run(d.parent, json.loads(d.read_text()), json.loads((d.parent / "metrics.json").read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda r: (r.config.get("created", ""), r.id), reverse=True)


def resolve_run(ref: str | None, *, runs: Path | None = None) -> Run:
    """A run by id (or unique prefix, or path); None means the newest run."""
    all_runs = list_runs(runs)
    if not all_runs:
        raise ProbesError(f"no runs in {runs or default_runs()}: train one with `probes fit`")
    if ref is None:
        return all_runs[0]
    hits = [r for r in all_runs if r.id == ref or str(r.folder) == ref] or [r for r in all_runs if r.id.startswith(ref)]
    if len(hits) != 1:
        what = "matches several runs" if hits else "matches no run"
        raise ProbesError(f"{ref!r} {what}; known: {', '.join(r.id for r in all_runs[:8])}")
    return hits[0]


def load_run(ref: str | Path | Run, *, runs: Path | None = None) -> Any:
    """The run's fitted head with its normalisation and temperature (a ``probes.probe.Probe``):
    ``load_run(RUN).predict_proba(features)`` applies it to any features of the same classes and dim."""
    from safetensors.numpy import load_file
    import torch

    from probes.data import Normalizer
    from probes.heads.registry import get_head
    from probes.probe import Probe

    run = ref if isinstance(ref, Run) else resolve_run(str(ref), runs=runs)
    state = load_file(str(run.folder / "head.safetensors"))
    entry = get_head(run.config["head"])
    if not hasattr(entry.cls, "from_state_dict"):
        raise ProbesError(f"run {run.id}: the {entry.name} head cannot be loaded back (it saves no state)")
    norm = Normalizer.from_state(run.config.get("normalize", "none"), state)
    head_state = {k: torch.from_numpy(v) for k, v in state.items() if not k.startswith("norm.")}
    head = entry.cls.from_state_dict(head_state, run.config.get("params", {}))
    return Probe(head, norm, float(run.config.get("temperature", 1.0)))  # runs before calibration: T = 1


def run_bytes(run: Run) -> int:
    return sum(p.stat().st_size for p in run.folder.iterdir() if p.is_file())


def remove_runs(refs: list[str], *, runs: Path | None = None) -> list[tuple[str, int]]:
    """Delete runs by id (or unique prefix); all are resolved before any is deleted. Returns (id, bytes) each."""
    chosen = [resolve_run(r, runs=runs) for r in refs]
    done = []
    for run in {r.folder: r for r in chosen}.values():
        size = run_bytes(run)
        shutil.rmtree(run.folder)
        done.append((run.id, size))
    return done


def used_keys(runs: Path | None = None) -> set[str]:
    """Keys of the feature sets the saved runs were fitted on (what `featstore gc --unused` keeps: probes
    registers this under the entry-point group ``featstore.set_users``). A missing runs folder is refused,
    since every set would then count as unused."""
    folder = Path(runs) if runs is not None else default_runs()
    if not folder.is_dir():
        raise ValueError(f"--unused: no runs folder {folder}; every set would count as unused (give --runs)")
    return {f["key"] for r in list_runs(folder) for f in r.config.get("features", [])}


def run_row(run: Run) -> dict[str, Any]:
    """One line of `probes runs`: what was fitted on what, and how it was selected."""
    feats = run.config.get("features", [])
    sel = str(run.metrics.get("selection", ""))
    kind = ("K-fold OOF" if "fold" in sel else "val") + (", refit" if "refit" in sel else "")
    params = run.config.get("selected") or {}
    return {"run": run, "id": run.id, "head": run.config.get("head", ""), "seed": run.config.get("seed", ""),
            "dataset": ",".join(dict.fromkeys(f.get("dataset") or "?" for f in feats)),
            "features": "+".join(f"{f['encoder']} ({f['key'][:8]})" for f in feats),
            "params": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()),
            "selection": kind, "score": float(run.metrics.get("val_top1", float("nan"))),
            "top5": float(run.metrics.get("val_top5", float("nan"))), "created": str(run.config.get("created", ""))[:16]}
