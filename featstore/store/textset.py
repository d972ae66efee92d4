"""Text sets: class-name embeddings of a CLIP text tower, stored beside the image sets of that encoder.

Layout: cache/<encoder>/<key>/text.json (classes, templates, logit scale, key fields) and
embeddings.npy (float32 [K, T, D], each row L2-normalised). No manifest.json, so image-set readers
never mistake one for a feature set. Written into a temp folder and renamed: a set is whole or absent,
and the same key is never rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featstore.errors import StoreError
from featstore.store.keys import canonical_json, default_cache, encoder_dirname, feature_key

TEXT_META = "text.json"
TEXT_ARRAY = "embeddings.npy"


@dataclass(frozen=True)
class TextSet:
    classes: list[str]  # class names in the dataset's class order (sorted folder names order)
    templates: list[str]  # prompt templates used, e.g. "a photo of a {}."
    embeddings: np.ndarray  # float32 [K, T, D]; each row L2-normalised
    logit_scale: float  # the CLIP model's logit_scale.exp(); 100.0 for imports unless given
    encoder: str  # registry name (or the import name)
    key: str
    names: list[str] = field(default_factory=list)  # the readable names put in the prompts (same order)
    folder: Path | None = None
    updated: str = ""

    def classifier(self) -> np.ndarray:
        """[K, D] zero-shot weights: the template embeddings averaged, then L2-normalised (as CLIP does)."""
        return _l2(self.embeddings.mean(axis=1))


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def write_text_set(cache: Path, *, encoder: str, key_fields: dict, classes, templates, embeddings,
                   logit_scale, names=None) -> Path:
    """Store a text set; returns its folder (an existing set with the same key is kept as it is)."""
    classes, templates = [str(c) for c in classes], [str(t) for t in templates]
    emb = np.asarray(embeddings, dtype=np.float32)
    emb = emb[:, None, :] if emb.ndim == 2 else emb
    if emb.ndim != 3 or emb.shape[0] != len(classes) or emb.shape[1] != len(templates):
        raise StoreError(f"text embeddings of shape {emb.shape}: expected [{len(classes)} classes, "
                         f"{len(templates)} templates, dim]")
    if not np.isfinite(emb).all():
        raise StoreError("text embeddings hold NaN or Inf")
    fields = {"kind": "text", **key_fields}
    key = feature_key(fields)
    folder = Path(cache or default_cache()) / encoder_dirname(encoder) / key
    if (folder / TEXT_META).exists():
        return folder
    from featstore.store import now_iso

    tmp = folder.with_name(f".{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / TEXT_ARRAY, _l2(emb))
    meta = {"kind": "text", "key": key, "encoder": encoder, "classes": classes, "names": list(names or classes),
            "templates": templates, "logit_scale": float(logit_scale), "shape": list(emb.shape),
            "key_fields": json.loads(canonical_json(fields)), "updated": now_iso()}
    (tmp / TEXT_META).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
    try:
        os.rename(tmp, folder)
    except OSError:  # another process stored the same key first: same fields, same content
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / TEXT_META).exists():
            raise
    return folder


def read_text_set(folder: Path) -> TextSet:
    meta: dict[str, Any] = json.loads((folder / TEXT_META).read_text(encoding="utf-8"))
    emb = np.load(folder / TEXT_ARRAY, allow_pickle=False)
    return TextSet(classes=meta["classes"], templates=meta["templates"], embeddings=emb,
                   logit_scale=float(meta["logit_scale"]), encoder=meta["encoder"], key=meta["key"],
                   names=meta.get("names", meta["classes"]), folder=folder, updated=meta.get("updated", ""))


def list_text_sets(cache: Path | None = None) -> list[TextSet]:
    """Every readable text set, newest first."""
    cache = Path(cache) if cache else default_cache()
    sets = []
    for meta in sorted(cache.glob(f"*/*/{TEXT_META}")) if cache.is_dir() else []:
        try:
            sets.append(read_text_set(meta.parent))
        except (OSError, ValueError, KeyError):
            continue  # damaged or foreign: `featstore ls` shows only real ones
    return sorted(sets, key=lambda s: s.updated, reverse=True)


def load_text_set(name: str, *, cache: Path) -> TextSet:
    """By key (or unique key prefix), `encoder/key`, or encoder name (which must then have one text set)."""
    sets = list_text_sets(cache)
    enc, _, key = name.rpartition("/") if "/" in name else ("", "", name)
    by_key = [s for s in sets if s.key.startswith(key) and (not enc or s.encoder == enc)]
    by_name = [s for s in sets if s.encoder == name]
    found = by_key or by_name
    if len(found) == 1:
        return found[0]
    if found:
        listed = "; ".join(f"{s.key} ({len(s.classes)} classes, {len(s.templates)} templates)" for s in found)
        raise StoreError(f"{name!r} names {len(found)} text sets: {listed}; give the key")
    known = ", ".join(f"{s.encoder} ({s.key})" for s in sets) or "none"
    raise StoreError(f"no text set {name!r} in {cache or default_cache()}; known: {known}. "
                     "Make one with featstore text --model M --data DIR (or import one with featstore import --text)")
