"""`featstore verify`: read every byte of a feature set through its checksums; with repair, fix what is derivable."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from featstore.datasets import scan_dataset
from featstore.errors import FeatstoreError, ImageDecodeError, StoreError, StoreLockedError
from featstore.images import sha1_bytes
from featstore.tars import read_item
from featstore.store.keys import STORE_FORMAT, canonical_json, feature_key, index_name
from featstore.store.manifest import SplitIndex, read_index, read_manifest, write_index, write_manifest
from featstore.store.shards import CorruptShardError, ShardRows, check_shard, read_rows, shard_files
from featstore.store.writer import now_iso, quarantine


@dataclass
class VerifyReport:
    """What one feature set holds that is wrong (`problems`), what was fixed, and what to run next."""

    folder: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not wrong, worth knowing (shards without checksums)
    repaired: list[str] = field(default_factory=list)
    extract_cmd: str = ""

    @property
    def sound(self) -> bool:
        return not self.problems


def verify_set(folder: Path, *, images: bool = False, repair: bool = False) -> VerifyReport:
    """Check shards (checksums, dims, keys), the manifest, every index against the shards and, with
    `images`, every image's stored sha1 against the file. With `repair`: quarantine bad shards, rebuild
    the manifest and indexes from the intact shards, then check again."""
    folder = Path(folder)
    lock = FileLock(str(folder / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StoreLockedError(f"feature set {folder} is being written right now; verify it when that run ends") from None
    except OSError:
        if repair:
            raise
        return _check(folder, images=images)  # a read-only store can still be checked (nobody can be writing it)
    try:
        report = _check(folder, images=images)
        if repair and not report.sound:
            repaired = _repair(folder)
            report = _check(folder, images=images)
            report.repaired = repaired
        return report
    finally:
        lock.release()


def _check(folder: Path, *, images: bool) -> VerifyReport:
    report = VerifyReport(folder)
    try:
        m: dict[str, Any] | None = read_manifest(folder)
    except StoreError as e:
        report.problems.append(str(e))
        m = None
    key_json = canonical_json(m["key_fields"]) if m else None
    if m is not None and m["key"] != folder.name:
        report.problems.append(f"manifest names key {m['key']}, the folder is {folder.name}")
    stored = _check_shards(folder, m, key_json, report)
    if m is None:
        return report
    report.extract_cmd = _extract_command(m)
    for split, entry in m["splits"].items():
        listed, on_disk = set(entry.get("shards", [])), set(shard_files(folder).get(split, []))
        for name in sorted(listed - on_disk):
            report.problems.append(f"{split}: shard {name} is listed in the manifest but missing")
        if entry.get("index"):
            _check_index(folder, split, entry, stored.get(split, set()), m, report, images=images)
        if entry.get("missing"):
            report.notes.append(f"{split}: {entry['missing']} images have no vector yet (a killed worker, or rows "
                                f"lost with a quarantined shard): run `{report.extract_cmd}` to compute them")
    return report


def _check_shards(folder: Path, m: dict[str, Any] | None, key_json: str | None,
                  report: VerifyReport) -> dict[str, set[tuple[str, str]]]:
    intact, bad = _read_shards(folder, key_json)
    for b in bad:
        (report.problems if b.fatal else report.notes).append(f"{b.split}: shard {b.name}: {b.reason}")
    stored: dict[str, set[tuple[str, str]]] = {}
    dims: dict[int, int] = {}
    for split, shards in intact.items():
        for _, rows, dim in shards:
            stored.setdefault(split, set()).update(zip(rows.ids, rows.sha1))
            dims[dim] = dims.get(dim, 0) + 1
    if m is not None and dims and set(dims) != {int(m["dim"])}:
        held = ", ".join(f"{d} ({n} shards)" for d, n in sorted(dims.items()))
        report.problems.append(f"manifest says dim {m['dim']}, the shards hold vectors of dim {held}")
    return stored


@dataclass(frozen=True)
class _Bad:
    split: str
    name: str
    reason: str
    fatal: bool = True


def _read_shards(folder: Path, key_json: str | None) -> tuple[dict[str, list[tuple[str, ShardRows, int]]], list[_Bad]]:
    """Every shard on disk read through its checksums: the usable ones per split, and the bad ones.

    A shard written before checksums existed is usable, and listed as bad with fatal=False."""
    out: dict[str, list[tuple[str, ShardRows, int]]] = {}
    bad: list[_Bad] = []
    for split, names in shard_files(folder).items():
        for name in names:
            try:
                rows, dim = check_shard(folder / name, key_json=key_json)
            except CorruptShardError as e:
                bad.append(_Bad(split, name, e.reason, e.fatal))
                if e.fatal:
                    continue
                rows, dim = read_rows(folder / name, key_json=key_json), _dim(folder / name)
            except StoreError as e:  # another feature set's shard
                bad.append(_Bad(split, name, str(e).split(": ", 1)[-1]))
                continue
            out.setdefault(split, []).append((name, rows, dim))
    return out, bad


def _dim(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["features"].shape[-1])


def _check_index(folder: Path, split: str, entry: dict[str, Any], stored: set[tuple[str, str]], m: dict[str, Any],
                 report: VerifyReport, *, images: bool) -> None:
    try:
        index = read_index(folder, split, required=True)
    except StoreError as e:
        report.problems.append(f"{split}: {e}")
        return
    if int(entry.get("count", -1)) != len(index):
        report.problems.append(f"{split}: manifest count {entry.get('count')} but the index holds {len(index)} images")
    lacking = [i for i, h in zip(index.ids, index.sha1) if (i, h) not in stored]
    if lacking:
        report.problems.append(f"{split}: {len(lacking)} images in the index have no intact stored vector "
                               f"(e.g. {lacking[0]})")
    n_classes = len(m.get("classes", []))
    bad = index.labels[(index.labels < -1) | (index.labels >= max(n_classes, 1))] if n_classes else []
    if len(bad):
        report.problems.append(f"{split}: {len(bad)} labels outside 0..{n_classes - 1} (e.g. {int(bad[0])})")
    if images:
        _check_images(split, index, m, report)


def _check_images(split: str, index: SplitIndex, m: dict[str, Any], report: VerifyReport) -> None:
    """Re-hash every image: catches a file replaced by one of the same size and mtime."""
    root = m.get("dataset", {}).get("root")
    try:
        paths = {i.id: i for i in scan_dataset(root, splits=[split]).splits.get(split, [])}
    except (FeatstoreError, OSError, TypeError) as e:
        report.problems.append(f"{split}: cannot check images, dataset {root} unreadable ({e})")
        return
    changed, gone = [], []
    for image_id, sha in zip(index.ids, index.sha1):
        path = paths.get(image_id)
        try:
            if path is None or sha1_bytes(read_item(path.file, path.member)) != sha:
                (gone if path is None else changed).append(image_id)
        except ImageDecodeError:
            gone.append(image_id)
    if changed:
        report.problems.append(f"{split}: {len(changed)} images changed on disk since they were embedded "
                               f"(e.g. {changed[0]}); rerun featstore extract to recompute them")
    if gone:
        report.problems.append(f"{split}: {len(gone)} images of the index are gone or unreadable (e.g. {gone[0]})")


def _repair(folder: Path) -> list[str]:
    """Quarantine what cannot be trusted; derive the manifest and the indexes again from the intact shards."""
    done: list[str] = []
    try:
        m: dict[str, Any] | None = read_manifest(folder)
        key_json = canonical_json(m["key_fields"]) if m["key"] == folder.name else None
    except StoreError:
        m, key_json = None, None
    found, bad = _read_shards(folder, key_json)
    for b in bad:
        if b.fatal:
            done.append(f"quarantined {b.split} shard {b.name} -> {quarantine(folder, b.name)} ({b.reason})")
    intact = {split: [(n, rows) for n, rows, _ in shards] for split, shards in found.items()}
    dims = {dim for shards in found.values() for _, _, dim in shards}
    if m is None or m["key"] != folder.name:
        first = next((folder / n for shards in intact.values() for n, _ in shards), None)
        m = _manifest_from_shards(folder, _shard_header(first) if first else None)
        done.append("manifest rebuilt from the shards")
    if len(dims) == 1 and int(m["dim"]) not in dims:
        done.append(f"manifest dim {m['dim']} corrected to {next(iter(dims))}, the dim of every shard")
        m["dim"] = next(iter(dims))
    for split in sorted(set(m["splits"]) | set(intact)):
        entry = m["splits"].setdefault(split, {"shards": [], "count": 0, "failures": []})
        entry["shards"] = [n for n, _ in intact.get(split, [])]
        try:
            index = read_index(folder, split)  # absent: empty, rebuilt below
            lacking = _lacking(index, intact.get(split, []))
        except StoreError:
            index, lacking = None, 0
        if index is None or lacking or not len(index):
            index = _index_from_shards(intact.get(split, []))
            entry["index"] = write_index(folder, split, index)
            done.append(f"{split}: index rebuilt from the shards ({len(index)} images"
                        + (f"; {lacking} lost with a quarantined shard" if lacking else "") + ")")
        entry["index"] = index_name(split)
        if lacking:
            entry["missing"] = lacking
        entry["count"] = len(index)
    m["updated"] = now_iso()
    m.setdefault("history", []).append({"repaired": now_iso(), "repairs": done})
    write_manifest(folder, m)
    return done


def _lacking(index: SplitIndex, shards: list[tuple[str, ShardRows]]) -> int:
    stored = {(i, h) for _, rows in shards for i, h in zip(rows.ids, rows.sha1)}
    return sum((i, h) not in stored for i, h in zip(index.ids, index.sha1))


def _index_from_shards(shards: list[tuple[str, ShardRows]]) -> SplitIndex:
    """One row per id, from the newest shard that holds it. size and mtime are unknown (-1): the next
    extract hashes those files again before trusting a vector, and recomputes any that changed."""
    latest: dict[str, tuple[str, int]] = {}
    for _, rows in shards:  # shard names sort oldest first
        for i, h, lab in zip(rows.ids, rows.sha1, rows.labels.tolist()):
            latest[i] = (h, lab)
    ids = sorted(latest)
    unknown = np.full(len(ids), -1, dtype=np.int64)
    return SplitIndex(ids=np.array(ids, dtype=object), sha1=np.array([latest[i][0] for i in ids], dtype=object),
                      labels=np.array([latest[i][1] for i in ids], dtype=np.int64), size=unknown, mtime_ns=unknown.copy())


def _shard_header(path: Path) -> dict[str, Any] | None:
    import h5py

    with h5py.File(path, "r") as f:
        raw, key = f.attrs.get("header", ""), f.attrs.get("key", "")
    return {"header": json.loads(raw), "key_fields": json.loads(key)} if raw and key else None


def _manifest_from_shards(folder: Path, found: dict[str, Any] | None) -> dict[str, Any]:
    if found is None:
        raise StoreError(f"cannot rebuild the manifest of {folder}: no intact shard records the set's description "
                         "(shards written by an older featstore); rerun featstore extract with the set's options")
    fields = found["key_fields"]
    if feature_key(fields) != folder.name:
        raise StoreError(f"cannot rebuild the manifest of {folder}: its shards belong to key {feature_key(fields)}")
    return {"format": STORE_FORMAT, "key": folder.name, "key_fields": fields, "splits": {}, "created": now_iso(),
            "history": [], **found["header"]}


def _extract_command(m: dict[str, Any]) -> str:
    data = m.get("dataset", {})
    if not data.get("root"):
        return ""
    args = ["featstore", "extract", "--model", m["encoder"], "--data", data["root"]]
    if data.get("name") and data["name"] != data["root"]:
        args += ["--name", data["name"]]
    args += ["--random-weights"] if m.get("random_weights") else []
    return shlex.join([*args, "--precision", m["key_fields"].get("precision", "auto")])
