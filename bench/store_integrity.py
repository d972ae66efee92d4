"""Cost of the store's integrity features: checksums on read, and many small shards vs few large ones.

    python bench/store_integrity.py --rows 16384 --dim 1024 --small 128

Prints, for one split of ROWS x DIM float16 vectors (warm page cache, median of --repeat reads):
- reading a shard with fletcher32 chunk checksums vs the same shard without (the read overhead),
  and hashing the whole file with sha1 (what a checksum recorded in the index would cost per read);
- loading the split from ROWS/SMALL small shards (a run flushed by age) vs one shard, and after compaction.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from featstore.store import FeatureSet, FeatureSetWriter, SplitIndex
from featstore.store.shards import read_features, write_shard


def _median_s(fn, repeat: int) -> float:
    fn()  # warm the page cache and h5py
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def checksum_costs(folder: Path, feats: np.ndarray, repeat: int) -> dict[str, float]:
    n = len(feats)
    ids = [f"img_{i:07d}.png" for i in range(n)]
    sha = [hashlib.sha1(i.encode()).hexdigest() for i in ids]
    t0 = time.perf_counter()
    with_sum = write_shard(folder, "a", ids=ids, labels=np.zeros(n), sha1=sha, features=feats, key_json="{}")
    write_s = time.perf_counter() - t0
    plain = folder / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("features", data=feats, chunks=(min(n, 512), feats.shape[1]))
    read_sum = _median_s(lambda: read_features(with_sum, slice(None)), repeat)
    read_plain = _median_s(lambda: read_features(plain, slice(None)), repeat)
    hash_file = _median_s(lambda: hashlib.sha1(with_sum.read_bytes()).hexdigest(), repeat)
    return {"write_s": write_s, "read_fletcher32_s": read_sum, "read_plain_s": read_plain,
            "fletcher32_overhead": read_sum / read_plain - 1, "sha1_file_s": hash_file,
            "sha1_overhead": (read_plain + hash_file) / read_plain - 1}


def shard_counts(folder: Path, feats: np.ndarray, small: int, repeat: int) -> dict[str, float]:
    n = len(feats)
    ids = np.array([f"img_{i:07d}.png" for i in range(n)], dtype=object)
    sha = np.array([hashlib.sha1(i.encode()).hexdigest() for i in ids], dtype=object)
    labels = np.zeros(n, dtype=np.int64)
    index = SplitIndex(ids=ids, sha1=sha, labels=labels, size=labels, mtime_ns=labels)
    out = {}
    for name, rows in (("one", n), ("small", small)):
        sub = folder / name
        fields = {"bench": name}
        header = {"encoder": "bench", "dim": feats.shape[1], "views": 1, "dtype": "float16", "classes": ["a"]}
        with FeatureSetWriter(sub, key=name, key_fields=fields, header=header, shard_rows=rows) as w:
            for lo in range(0, n, rows):
                w.add("train", list(ids[lo:lo + rows]), list(labels[lo:lo + rows]), list(sha[lo:lo + rows]),
                      feats[lo:lo + rows])
            w.flush("train")
            entry = w.manifest["splits"]["train"]
            w.compact = lambda split: (0, 0)  # keep the small shards for the measurement; compact below
            w.commit_split("train", index, [])
            out[f"{name}_shards"] = len(entry["shards"])
        fs = FeatureSet.open(sub)
        out[f"load_{name}_s"] = _median_s(lambda: fs.load("train"), repeat)
    _strip_checksums(next((folder / "one").glob("train-*.h5")))
    fs = FeatureSet.open(folder / "one")
    out["load_one_unchecked_s"] = _median_s(lambda: fs.load("train"), repeat)
    out["load_checksum_overhead"] = out["load_one_s"] / out["load_one_unchecked_s"] - 1
    with FeatureSetWriter(folder / "small", key="small", key_fields={"bench": "small"}, header={}, shard_rows=4096) as w:
        t0 = time.perf_counter()
        before, after = w.compact("train")
        out.update(compact_s=time.perf_counter() - t0, compacted_from=before, compacted_to=after)
    fs = FeatureSet.open(folder / "small")
    out["load_compacted_s"] = _median_s(lambda: fs.load("train"), repeat)
    out["small_vs_one"] = out["load_small_s"] / out["load_one_s"]
    out["compacted_vs_one"] = out["load_compacted_s"] / out["load_one_s"]
    return out


def _strip_checksums(path: Path) -> None:
    """The same shard as an older featstore wrote it: no fletcher32, no ids sha1."""
    with h5py.File(path, "r") as f:
        data = {k: (f[k].asstr()[:] if k == "ids" else f[k][:]) for k in f}
        attrs = {k: v for k, v in f.attrs.items() if k != "ids_sha1"}
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, dtype=h5py.string_dtype() if k == "ids" else None,
                             chunks=(min(len(v), 512), *v.shape[1:]) if k == "features" else None)
        f.attrs.update(attrs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--small", type=int, default=128, help="rows per small shard (a flush by age)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    feats = np.random.default_rng(0).normal(size=(args.rows, args.dim)).astype(np.float16)
    folder = Path(tempfile.mkdtemp(prefix="featstore-bench-"))
    try:
        for k, v in {**checksum_costs(folder, feats, args.repeat),
                     **shard_counts(folder, feats, args.small, args.repeat)}.items():
            print(f"{k:22s} {v:.4f}" if isinstance(v, float) else f"{k:22s} {v}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
