"""The duplicate pairs of a stored set, kept on disk beside it: a second fit on the same set does not recompute them."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

from featstore.audit.rows import AuditRows
from featstore.store import FeatureSet
from featstore.store.files import replace_atomically

# Part of every key: bump it when close_pairs, the centring or the screening changes which pairs a set has,
# so results of the old code are never reused.
AUDIT_VERSION = 1
FOLDER = "audit-cache"  # inside the set's folder: it goes when the set goes
KEEP = 4  # entries per set (thresholds, split choices); older ones are removed when a new one is written

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def pairs_key(fs: FeatureSet, rows: AuditRows, *, threshold: float) -> str:
    """What makes stored pairs valid: the audit's version and threshold, the manifest's splits and update time,
    and the rows themselves in stream order (ids, content hashes, and each shard's name, size and mtime with
    the rows read from it). Pairs are stream positions, so any change to these must miss."""
    h = hashlib.sha256()
    head = {"version": AUDIT_VERSION, "threshold": float(threshold), "updated": fs.manifest.get("updated"),
            "splits": fs.manifest.get("splits"), "dim": rows.dim}
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for path, src in rows.plan:
        st = path.stat()
        h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(np.ascontiguousarray(src, dtype=np.int64).tobytes())
    for col in (rows.splits, rows.ids, rows.sha1):
        h.update("\0".join(map(str, col)).encode("utf-8", "surrogateescape") + b"\1")
    return h.hexdigest()[:32]


def load_pairs(fs: FeatureSet, key: str) -> Pairs | None:
    """The pairs stored under ``key``, or None (never stored, or unreadable: then they are recomputed)."""
    path = fs.folder / FOLDER / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["i"].astype(np.int64), z["j"].astype(np.int64), z["cos"].astype(np.float32)
    except (OSError, KeyError, ValueError):  # a damaged entry costs one recomputation, nothing else
        return None


def save_pairs(fs: FeatureSet, key: str, pairs: Pairs) -> bool:
    """Store the pairs under ``key`` (atomically) and drop the oldest entries past ``KEEP``. False when the
    store is not writable (a read-only mount): the audit is then recomputed next time, nothing is lost."""
    folder = fs.folder / FOLDER
    buf = io.BytesIO()
    np.savez(buf, i=pairs[0], j=pairs[1], cos=pairs[2])
    try:
        folder.mkdir(exist_ok=True)
        replace_atomically(folder / f"{key}.npz", buf.getvalue())
        entries = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        return False
    return True
