"""`probes fewshot`: features (and text) from the store -> the protocol -> JSON + PNG in an output folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from probes.data import load_features
from probes.fewshot.plot import plot_fewshot
from probes.fewshot.protocol import FewShotResult, run_protocol
from probes.fewshot.textsource import resolve_text


@dataclass
class FewShotRun:
    result: FewShotResult
    json: Path
    png: Path


def fewshot_from_store(features: Sequence[str], *, text: str | None, shots: Sequence[int], seeds: int,
                       heads: Sequence[str] | None, out: Path, cache: Path | None = None, holdout: float = 0.2,
                       progress: Callable[[str], None] | None = None) -> FewShotRun:
    """Run the protocol on a stored set: draws from train, scores on val, or on a held-out part of train
    (`holdout` per class, seeded, never drawn from) when the set has no val split."""
    feats = load_features(list(features), cache=cache, splits=("train", "val"))
    tr = feats.split("train")
    keep = tr.labels >= 0
    xt, yt = tr.features[keep], tr.labels[keep]
    if "val" in feats.splits:
        va = feats.split("val")
        xv, yv, evaluated = va.features[va.labels >= 0], va.labels[va.labels >= 0], "val"
    else:
        held = _holdout(yt, holdout)
        xv, yv, evaluated = xt[held], yt[held], f"held-out {holdout:.0%} of train per class (no val split)"
        xt, yt = xt[~held], yt[~held]
    txt = resolve_text(text, cache=cache, classes=feats.classes) if text else None
    res = run_protocol((xt, yt), (xv, yv), text=txt, shots=shots, seeds=seeds, heads=heads, progress=progress)
    res.meta.update({"features": list(features), "text": text, "evaluated_on": evaluated})
    out.mkdir(parents=True, exist_ok=True)
    return FewShotRun(res, res.write_json(out / "fewshot.json"), plot_fewshot(res, out / "fewshot.png"))


def _holdout(y: np.ndarray, frac: float) -> np.ndarray:
    rng = np.random.default_rng(12345)
    mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        mask[idx[:max(1, int(round(frac * len(idx))))]] = True
    return mask
