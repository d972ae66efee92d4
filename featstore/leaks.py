"""Byte-identical images shared between splits: a val that leaks train (a seed report's lost afternoon)."""

from __future__ import annotations

from itertools import combinations

from featstore.store import FeatureSet


def shared_images(fs: FeatureSet) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """{(split_a, split_b): [(id_a, id_b), ...]} for files with the same content hash in two splits."""
    by_split = {s: dict(zip(fs.index(s).sha1, fs.index(s).ids)) for s in fs.splits}
    out = {}
    for a, b in combinations(by_split, 2):
        common = by_split[a].keys() & by_split[b].keys()
        if common:
            out[(a, b)] = sorted((by_split[a][h], by_split[b][h]) for h in common)
    return out
