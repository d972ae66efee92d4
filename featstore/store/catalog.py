"""Find feature sets in a cache folder: list them, or open one by encoder name or key."""

from __future__ import annotations

from pathlib import Path

from featstore.errors import StoreError
from featstore.store.featureset import FeatureSet
from featstore.store.keys import MANIFEST, SHARD_RE, default_cache


def list_feature_sets(cache: Path | None = None) -> list[FeatureSet]:
    """Every feature set with a readable manifest, newest first."""
    cache = Path(cache) if cache else default_cache()
    if not cache.is_dir():
        return []
    sets = []
    for manifest in sorted(cache.glob(f"*/*/{MANIFEST}")):
        try:
            sets.append(FeatureSet.open(manifest.parent))
        except (StoreError, OSError):
            continue  # a damaged folder: list_damaged reports it, it never hides the others
    return sorted(sets, key=lambda s: s.manifest.get("updated", ""), reverse=True)


def open_feature_set(ref: str, *, cache: Path | None = None, dataset: str | Path | None = None) -> FeatureSet:
    """By key (or unique key prefix), `encoder/key`, or name (the most recent complete set).

    A name is `ENCODER` (its default output), `ENCODER:OUTPUT`, either with `@VIEW` (e.g. `@hflip`).
    A name that matches sets of several datasets is refused (listing them) unless one dataset is
    chosen by ``dataset`` (a folder or a dataset name) or, without it, is the current folder's.
    """
    cache = Path(cache) if cache else default_cache()
    sets = list_feature_sets(cache)
    enc, _, key = ref.rpartition("/") if "/" in ref else ("", "", ref)
    by_key = [s for s in sets if s.key.startswith(key) and (not enc or s.encoder == enc)]
    if len(by_key) == 1:
        return by_key[0]
    if len(by_key) > 1:
        raise StoreError(f"{ref!r} matches {len(by_key)} feature sets; give more of the key")
    by_name = [s for s in sets if s.splits and _named(s, ref)]
    if by_name:
        return _one_dataset(by_name, ref, dataset)
    known = ", ".join(sorted({f"{set_name(s)} ({s.key})" for s in sets})) or "none"
    raise StoreError(f"no feature set {ref!r} in {cache}; known: {known}")


def _dataset_of(fs: FeatureSet) -> tuple[str, str]:
    return fs.dataset.get("name") or "", fs.dataset.get("root") or ""


def _is_dataset(fs: FeatureSet, dataset: str | Path) -> bool:
    name, root = _dataset_of(fs)
    return str(dataset) == name or bool(root) and Path(dataset).resolve() == Path(root).resolve()


def _is_current(fs: FeatureSet) -> bool:
    """The dataset folder is the current folder, inside it, or holds it."""
    root = _dataset_of(fs)[1]
    if not root:
        return False
    here, root_path = Path.cwd().resolve(), Path(root).resolve()
    return here == root_path or here in root_path.parents or root_path in here.parents


def _folder_of(fs: FeatureSet) -> str:
    """One dataset = one folder (two --name over one folder are the same images); imported sets by name."""
    name, root = _dataset_of(fs)
    return root or f"name:{name}"


def _one_dataset(sets: list[FeatureSet], ref: str, dataset: str | Path | None) -> FeatureSet:
    """The newest of ``sets`` once they all describe one dataset; a name never silently picks another dataset's set."""
    if len({_folder_of(s) for s in sets}) == 1:
        return sets[0]
    hits = [s for s in sets if _is_dataset(s, dataset)] if dataset is not None else [s for s in sets if _is_current(s)]
    if hits and len({_folder_of(s) for s in hits}) == 1:
        return hits[0]
    listed = "; ".join(f"{s.key} (dataset {_dataset_of(s)[0] or '?'}, {s.manifest.get('updated', '')[:16]})"
                       for s in sets)
    chosen = f" and none is of dataset {dataset}" if dataset is not None else ""
    raise StoreError(f"{ref!r} names feature sets of {len({_folder_of(s) for s in sets})} datasets{chosen}: {listed}; "
                     "give the key, or the dataset folder (probes fit --data DIR)")


def set_name(fs: FeatureSet) -> str:
    """`ENCODER[:OUTPUT][@VIEW]`: the output and view appear when they are not the default ones."""
    fields = fs.manifest.get("key_fields", {})
    name = fs.encoder + (f":{fields['output']}" if "output" in fields else "")
    return name + (f"@{fields['view']}" if "view" in fields else "")


def _named(fs: FeatureSet, ref: str) -> bool:
    base, _, view = ref.partition("@")
    fields = fs.manifest.get("key_fields", {})
    if fields.get("view", "orig") != (view or "orig"):
        return False
    if fs.encoder == base:  # encoder names may hold colons themselves (timm:vit_...): exact match first
        return "output" not in fields
    encoder, _, output = base.rpartition(":")
    return fs.encoder == encoder and fs.manifest.get("output") == output


def view_sets(fs: FeatureSet, *, cache: Path | None = None) -> dict[str, FeatureSet]:
    """{view: set} of the stored views of `fs` (same encoder, weights, output, precision, dataset).

    For test-time averaging and view-augmented training: rows of each set align by id.
    """
    def same(fields: dict) -> dict:
        return {k: v for k, v in fields.items() if k != "view"}

    base = same(fs.manifest["key_fields"])
    sets = list_feature_sets(cache or fs.folder.parent.parent)
    return {s.manifest["key_fields"].get("view", "orig"): s for s in sets if same(s.manifest["key_fields"]) == base}


def list_damaged(cache: Path | None = None) -> list[tuple[Path, str]]:
    """Folders that hold shards or a manifest but do not open as a feature set, with the reason."""
    cache = Path(cache) if cache else default_cache()
    if not cache.is_dir():
        return []
    damaged = []
    for folder in sorted(p for p in cache.glob("*/*") if p.is_dir()):
        try:
            names = [p.name for p in folder.iterdir()]
        except OSError as e:
            damaged.append((folder, f"unreadable folder: {e.strerror or e}"))
            continue
        if MANIFEST not in names and not any(SHARD_RE.match(n) for n in names):
            continue
        try:
            FeatureSet.open(folder)
        except StoreError as e:
            damaged.append((folder, str(e)))
    return damaged


def find_set_folder(ref: str, *, cache: Path | None = None) -> Path:
    """Like open_feature_set, but also finds a set too damaged to open (by key, key prefix or `encoder/key`)."""
    try:
        return open_feature_set(ref, cache=cache).folder
    except StoreError:
        key = ref.rpartition("/")[2]
        hits = [f for f, _ in list_damaged(cache) if f.name.startswith(key)]
        if len(hits) == 1:
            return hits[0]
        raise
