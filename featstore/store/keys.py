"""Content keys and folder layout of the store: cache/<encoder>/<key>/."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

STORE_FORMAT = 1
MANIFEST = "manifest.json"
SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<num>\d{5,})\.h5$")


def canonical_json(obj: Any) -> str:
    """One spelling per value: sorted keys, no spaces, lists for tuples."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def _jsonable(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable in a store key: {type(o).__name__}")


def feature_key(fields: dict[str, Any]) -> str:
    """16 hex chars of sha256 over the canonical JSON: same fields, same key, on any machine."""
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:16]


def encoder_dirname(name: str) -> str:
    """`timm:vit_tiny.augreg` -> `timm-vit_tiny.augreg` (a safe folder name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "encoder"


def default_cache() -> Path:
    return Path(os.environ.get("FEATSTORE_CACHE") or "cache")  # set but empty: the default


def shard_name(split: str, num: int) -> str:
    return f"{split}-{num:05d}.h5"


def index_name(split: str) -> str:
    return f"index-{split}.h5"
