"""Find feature sets in a cache folder: list them, or open one by encoder name or key."""

from __future__ import annotations

from pathlib import Path

from featstore.errors import StoreError
from featstore.store.featureset import FeatureSet
from featstore.store.keys import MANIFEST, default_cache


def list_feature_sets(cache: Path | None = None) -> list[FeatureSet]:
    """Every feature set with a readable manifest, newest first."""
    cache = Path(cache) if cache else default_cache()
    if not cache.is_dir():
        return []
    sets = []
    for manifest in sorted(cache.glob(f"*/*/{MANIFEST}")):
        try:
            sets.append(FeatureSet.open(manifest.parent))
        except StoreError:
            continue  # a foreign or damaged folder is not a feature set; `featstore ls` shows only real ones
    return sorted(sets, key=lambda s: s.manifest.get("updated", ""), reverse=True)


def open_feature_set(ref: str, *, cache: Path | None = None) -> FeatureSet:
    """By key (or unique key prefix), `encoder/key`, or encoder name (the most recent complete set)."""
    cache = Path(cache) if cache else default_cache()
    sets = list_feature_sets(cache)
    enc, _, key = ref.rpartition("/") if "/" in ref else ("", "", ref)
    by_key = [s for s in sets if s.key.startswith(key) and (not enc or s.encoder == enc)]
    if len(by_key) == 1:
        return by_key[0]
    if len(by_key) > 1:
        raise StoreError(f"{ref!r} matches {len(by_key)} feature sets; give more of the key")
    by_name = [s for s in sets if s.encoder == ref and s.splits]
    if by_name:
        return by_name[0]
    known = ", ".join(sorted({f"{s.encoder} ({s.key})" for s in sets})) or "none"
    raise StoreError(f"no feature set {ref!r} in {cache}; known: {known}")
