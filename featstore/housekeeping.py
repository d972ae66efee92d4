"""featstore rm / gc: delete a feature set, and the litter a store gathers (temp shards, quarantined files, unused sets)."""

from __future__ import annotations

import shutil
from importlib.metadata import entry_points
from dataclasses import dataclass, field
from pathlib import Path

from featstore.store import FeatureSet, list_feature_sets, open_feature_set
from featstore.errors import StoreLockedError
from featstore.store.catalog import set_name
from featstore.store.locks import hold_set
from featstore.store.shards import remove_stale_temps
from featstore.store.writer import QUARANTINE


_UNUSED = " is used by no run"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def remove_set(ref: str, *, cache: Path | None = None, dataset: str | Path | None = None) -> tuple[FeatureSet, int]:
    """Delete one feature set's folder (found like `--features`: a name of two datasets is refused); returns its bytes.
    Runs keep what they need to submit (their test predictions and test-split record), so they survive it."""
    fs = open_feature_set(ref, cache=cache, dataset=dataset)
    size = folder_bytes(fs.folder)
    with hold_set(fs.folder, doing="remove"):
        shutil.rmtree(fs.folder)
    parent = fs.folder.parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()  # the encoder's folder, now empty
    return fs, size


@dataclass
class Garbage:
    """What `featstore gc` found (and removed unless dry): (path, bytes, why) per item."""

    items: list[tuple[Path, int, str]] = field(default_factory=list)
    busy: list[Path] = field(default_factory=list)  # unused sets kept because a writer holds them right now

    @property
    def bytes(self) -> int:
        return sum(b for _, b, _ in self.items)


def collect_garbage(*, cache: Path | None = None, keep_keys: set[str] | None = None, dry_run: bool = False) -> Garbage:
    """Temp shards of killed writers, quarantined files; with ``keep_keys`` also every set whose key is not in it
    (the sets no run uses: the caller lists the runs' keys, the store knows no runs)."""
    found = Garbage()
    for fs in list_feature_sets(cache):
        if keep_keys is not None and fs.key not in keep_keys:
            found.items.append((fs.folder, folder_bytes(fs.folder), f"set {set_name(fs)}{_UNUSED}"))
            continue
        for tmp in fs.folder.glob(".tmp@*.h5"):
            found.items.append((tmp, tmp.stat().st_size, "temp shard of a killed writer"))
        q = fs.folder / QUARANTINE
        if q.is_dir():
            found.items.append((q, folder_bytes(q), "quarantined (damaged) shards"))
    if dry_run:
        return found
    removed: list[tuple[Path, int, str]] = []
    busy: list[Path] = []
    temps: dict[Path, set[Path]] = {}
    for item in found.items:
        path = item[0]
        if path.name.startswith(".tmp@"):  # only temps of writers that are dead (a live extract keeps its own)
            if path.parent not in temps:
                temps[path.parent] = set(remove_stale_temps(path.parent))
            if path in temps[path.parent]:
                removed.append(item)
        elif item[2].endswith(_UNUSED):  # a whole set: never under a live writer (it may be a new set no run uses yet)
            try:
                with hold_set(path, doing="remove"):
                    shutil.rmtree(path, ignore_errors=True)
            except StoreLockedError:
                busy.append(path)
                continue
            removed.append(item)
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(item)
    return Garbage(removed, busy)


USERS_GROUP = "featstore.set_users"  # entry points: callable(runs_folder | None) -> set of feature-set keys in use


def set_keys_in_use(runs: Path | None = None) -> set[str]:
    """Keys of the sets some installed package still uses (`gc --unused` keeps them).

    The packages that fit on feature sets (probes) register a callable under the entry-point group
    ``featstore.set_users``: the store knows no runs and never imports the packages built on it."""
    users = list(entry_points(group=USERS_GROUP))
    if not users:
        raise ValueError(f"--unused: no installed package registers the feature sets it uses (entry points "
                         f"'{USERS_GROUP}'; probes does): every set would count as unused")
    keys: set[str] = set()
    for user in users:
        keys |= set(user.load()(runs))
    return keys
