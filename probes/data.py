"""Feature sets from the store -> aligned float32 train/val/test arrays (several sets concatenated per id)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featstore.errors import StoreError
from featstore.store import FeatureSet, SplitData, open_feature_set


class ProbesError(StoreError):
    """A probes request that does not fit the data (the CLI prints it as one line)."""


@dataclass
class Features:
    """What a head trains on: the same ids in every concatenated set, one class list."""

    sets: list[FeatureSet]
    classes: list[str]
    splits: dict[str, SplitData] = field(default_factory=dict)

    @property
    def refs(self) -> list[dict[str, str]]:
        return [{"encoder": s.encoder, "key": s.key, "dataset": s.dataset.get("name", "")} for s in self.sets]

    @property
    def dataset(self) -> dict[str, Any]:
        return self.sets[0].dataset

    @property
    def dim(self) -> int:
        return sum(s.dim for s in self.sets)

    def split(self, name: str) -> SplitData:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            names = "+".join(s.encoder for s in self.sets)
            raise ProbesError(f"feature set {names} has no {name} split (has: {have}); "
                              f"run featstore extract with --splits including {name}")
        return self.splits[name]


def load_features(refs: list[str], *, cache: Path | None = None, splits: tuple[str, ...] = ("train", "val", "test"),
                  dtype: Any = np.float32, tta: bool = False, train_views: bool = False) -> Features:
    """Open each set, check they describe the same images and classes, concatenate per id.

    Views (sets extracted with ``--views orig,hflip``): ``tta`` replaces each val/test vector by the
    mean over the stored views of its image; ``train_views`` adds every other view of a train image
    as a train row with the same id and label (CV keeps the rows of one id in one fold).
    """
    if not refs:
        raise ProbesError("no feature sets given (--features NAME[,NAME...]; see featstore ls)")
    sets = [open_feature_set(r, cache=cache) for r in refs]
    classes = sets[0].classes
    for s in sets[1:]:
        if s.classes != classes:
            raise ProbesError(f"class lists differ: {sets[0].encoder} has {len(classes)} classes, {s.encoder} has "
                              f"{len(s.classes)} (first difference: {_first_diff(classes, s.classes)})")
    feats = Features(sets=sets, classes=classes)
    for split in splits:
        present = [split in s.splits for s in sets]
        if not any(present):
            continue
        if not all(present):
            missing = [s.encoder for s, p in zip(sets, present) if not p]
            raise ProbesError(f"split {split} is missing from {', '.join(missing)}; extract it there too")
        mode = "rows" if train_views and split == "train" else "mean" if tta and split != "train" else None
        parts = [_load_views(s, split, dtype=dtype, mode=mode, cache=cache) for s in sets]
        feats.splits[split] = _concat(split, parts, sets)
    return feats


def _load_views(fs: FeatureSet, split: str, *, dtype: Any, mode: str | None, cache: Path | None) -> SplitData:
    """One set's split; with ``mode`` its stored views too: averaged per image ("mean") or stacked as rows ("rows")."""
    base = fs.load(split, dtype=dtype)
    if mode is None:
        return base
    from featstore.store.catalog import set_name, view_sets

    others = [v for name, v in sorted(view_sets(fs, cache=cache).items()) if v.key != fs.key]
    if not others:
        raise ProbesError(f"{set_name(fs)} has no other view stored (--tta / --train-views need one): "
                          "featstore extract ... --views orig,hflip")
    loaded = []
    for v in others:
        if split not in v.splits:
            raise ProbesError(f"{set_name(v)} has no {split} split; extract the views on the same splits")
        data = v.load(split, dtype=dtype)
        if not np.array_equal(data.ids, base.ids):
            raise ProbesError(f"{split}: the views {set_name(fs)} and {set_name(v)} hold different images; "
                              "extract them together (featstore extract --views ...)")
        loaded.append(data.features)
    if mode == "mean":
        return SplitData(ids=base.ids, labels=base.labels, features=np.mean([base.features, *loaded], axis=0).astype(dtype))
    n = 1 + len(loaded)
    return SplitData(ids=np.concatenate([base.ids] * n), labels=np.concatenate([base.labels] * n),
                     features=np.concatenate([base.features, *loaded]))


def _concat(split: str, parts: list[SplitData], sets: list[FeatureSet]) -> SplitData:
    first = parts[0]
    for s, p in zip(sets[1:], parts[1:]):
        if len(p.ids) != len(first.ids) or not np.array_equal(p.ids, first.ids):
            extra = sorted(set(p.ids) ^ set(first.ids))[:3]
            raise ProbesError(f"{split}: {sets[0].encoder} and {s.encoder} hold different images "
                              f"({len(first.ids)} vs {len(p.ids)}; e.g. {', '.join(map(str, extra))}); "
                              "re-extract both on the same data")
        if not np.array_equal(p.labels, first.labels):
            raise ProbesError(f"{split}: labels differ between {sets[0].encoder} and {s.encoder} for the same ids")
    if len(parts) == 1:
        return first
    return SplitData(ids=first.ids, labels=first.labels, features=np.concatenate([p.features for p in parts], axis=1))


def _first_diff(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"index {i}: {x!r} vs {y!r}"
    return f"lengths {len(a)} vs {len(b)}"


@dataclass
class Normalizer:
    """Per-feature standardisation (fitted on train), L2 per row, or nothing; saved with the head."""

    kind: str = "standard"
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    KINDS = ("standard", "l2", "none")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ProbesError(f"unknown normalisation {self.kind!r}; expected one of {', '.join(self.KINDS)}")

    def fit(self, x: np.ndarray) -> "Normalizer":
        if self.kind == "standard":
            self.mean = x.mean(0, dtype=np.float64).astype(np.float32)
            std = x.std(0, dtype=np.float64).astype(np.float32)
            self.scale = np.where(std > 1e-6, std, 1.0).astype(np.float32)  # constant features stay 0, not NaN
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "standard":
            return (x - self.mean) / self.scale
        if self.kind == "l2":
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def state(self) -> dict[str, np.ndarray]:
        return {} if self.mean is None else {"norm.mean": self.mean, "norm.scale": self.scale}

    @classmethod
    def from_state(cls, kind: str, state: dict[str, np.ndarray]) -> "Normalizer":
        return cls(kind, state.get("norm.mean"), state.get("norm.scale"))
