"""Readable class names for text prompts, and whether a class list is ImageNet's (for provenance warnings).

WordNet-id folders (`n01440764`, as in the MVA and Boostcamp sketch sets) map to open_clip's curated
ImageNet-1k names (the ones OpenAI's zero-shot prompts were tuned with), else to the first lemma of
timm's ImageNet-22k synset description; any other folder name has `_` read as a space.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from featstore.errors import FeatstoreError

_WNID = re.compile(r"^n\d{8}$")


def _package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside ``package``, found without importing it: importing timm or open_clip costs
    ~3.5 s each, and `probes fit` asks for these lists on every run (the label-leakage check)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FeatstoreError(f"{package} is not installed")
    return Path(list(spec.submodule_search_locations)[0], *parts)


@lru_cache(maxsize=1)
def _in1k() -> dict[str, int]:
    """WordNet id -> index: timm's ImageNetInfo("imagenet-1k").label_names(), read from its file."""
    synsets = _package_file("timm", "data", "_info", "imagenet_synsets.txt").read_text(encoding="utf-8").splitlines()
    return {w: k for k, w in enumerate(synsets)}


@lru_cache(maxsize=1)
def _in1k_names() -> frozenset[str]:
    """open_clip's IMAGENET_CLASSNAMES, from its metadata module alone (it imports nothing)."""
    import importlib.util

    path = _package_file("open_clip", "zero_shot_metadata.py")
    spec = importlib.util.spec_from_file_location("_open_clip_zero_shot_metadata", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(n.lower() for n in module.IMAGENET_CLASSNAMES)


def readable_name(folder: str) -> str:
    if _WNID.match(folder):
        idx = _in1k().get(folder)
        if idx is not None:
            from open_clip import IMAGENET_CLASSNAMES

            return IMAGENET_CLASSNAMES[idx]
        from timm.data import ImageNetInfo

        desc = ImageNetInfo("imagenet-22k").label_name_to_description(folder)
        if desc and desc != folder:
            return desc.split(",")[0].strip()
    return folder.replace("_", " ").strip()


def readable_names(classes: list[str], *, overrides: dict[str, str] | None = None) -> list[str]:
    """One prompt-ready name per class, in the class order; `overrides` (folder -> name) win."""
    overrides = overrides or {}
    return [overrides.get(c) or readable_name(c) for c in classes]


_PAIR = re.compile(r"^(?P<key>[^,\t:]+?)\s*[,\t:]\s*(?P<name>.+)$|^(?P<wnid>n\d{8})\s+(?P<wname>.+)$")


def name_pairs(lines: list[str]) -> dict[str, str] | None:
    """`FOLDER,NAME` / `FOLDER: NAME` / `FOLDER<tab>NAME` / `n01440764 tench` lines -> {folder: name};
    None unless every line is such a pair."""
    matches = [_PAIR.match(ln) for ln in lines]
    if not lines or not all(matches):
        return None
    return {(m["key"] or m["wnid"]).strip(): (m["name"] or m["wname"]).strip() for m in matches}


def read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


def read_name_file(path: Path, classes: list[str]) -> dict[str, str]:
    """A user's names for `classes`: FOLDER,NAME pairs, or one name per line in class order."""
    lines = read_lines(path)
    pairs = name_pairs(lines)
    if pairs is not None:
        return pairs
    if len(lines) != len(classes):
        raise FeatstoreError(f"{path}: {len(lines)} names for {len(classes)} classes; give one per class "
                             "in class order, or FOLDER,NAME lines")
    return dict(zip(classes, lines))


def imagenet_fraction(classes: list[str]) -> float:
    """Share of the classes that are ImageNet-1k classes (by WordNet id or by open_clip's class name)."""
    if not classes:
        return 0.0
    hits = sum(c in _in1k() or c.replace("_", " ").lower() in _in1k_names() for c in classes)
    return hits / len(classes)
