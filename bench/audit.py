"""featstore audit time vs rows: exact cosine pairs by blocked bf16-screened products, streamed from fp16 shards.

    python bench/audit.py                        # 20k and 200k rows of dim 768
    python bench/audit.py --sizes 20000 --dim 1408
    python bench/audit.py --sizes 200000 --memory-gb 0.5   # a resident piece of ~110k rows: two passes

Synthetic embeddings (100 class centres + noise, cos ~0.3-0.6 within a class) with 1% of the rows
replaced by noisy copies of other rows (cos ~0.97), written as a feature set (fp16 shards of 4096 rows)
in a temporary store. Times `audit_feature_set` (read + pairs + clusters), reports the recall of the
planted copies, and the peak RSS of the process (VmHWM). Writes bench/out/audit.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic(rows: int, dim: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features float16, labels, planted (original, copy) row pairs)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((100, dim)).astype(np.float32)
    labels = rng.integers(0, 100, rows)
    x = np.empty((rows, dim), np.float16)
    for lo in range(0, rows, 8192):
        hi = min(rows, lo + 8192)
        x[lo:hi] = centres[labels[lo:hi]] + 1.2 * rng.standard_normal((hi - lo, dim)).astype(np.float32)
    copies = rng.choice(rows, rows // 50, replace=False)
    src, dst = copies[: len(copies) // 2], copies[len(copies) // 2:]
    x[dst] = x[src] + 0.25 * rng.standard_normal((len(src), dim)).astype(np.float16)
    labels[dst] = labels[src]
    return x, labels, np.stack([src, dst], 1)


def write_set(folder: Path, x: np.ndarray, labels: np.ndarray) -> Path:
    from featstore.store import FeatureSetWriter, SplitIndex, feature_key, now_iso

    n, dim = x.shape
    fields = {"bench": "audit", "rows": n, "dim": dim}
    key = feature_key(fields)
    out = folder / "synth" / key
    header = {"encoder": "synth", "dim": dim, "views": 1, "dtype": "float16", "classes": [str(c) for c in range(100)],
              "random_weights": False, "weights_source": "synthetic",
              "dataset": {"root": "", "name": "synth", "layout": "imported", "test_order": None}}
    ids = np.array([f"{i:08d}" for i in range(n)], dtype=object)
    sha1 = np.array([f"{i:040x}" for i in range(n)], dtype=object)
    with FeatureSetWriter(out, key=key, key_fields=fields, header=header) as w:
        for lo in range(0, n, w.shard_rows):
            hi = min(lo + w.shard_rows, n)
            w.add("train", list(ids[lo:hi]), list(labels[lo:hi]), list(sha1[lo:hi]), x[lo:hi])
        zeros = np.zeros(n, dtype=np.int64)
        w.commit_split("train", SplitIndex(ids=ids, sha1=sha1, labels=labels, size=zeros, mtime_ns=zeros), [])
        w.record_run({"started": now_iso(), "finished": now_iso(), "device": "bench"})
    return out


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20000,200000")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--memory-gb", type=float, default=4.0)
    ap.add_argument("--threshold", type=float, default=0.95)
    args = ap.parse_args()
    import torch

    from featstore.audit import audit_feature_set
    from featstore.store import FeatureSet

    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        x, labels, planted = synthetic(n, args.dim)
        with tempfile.TemporaryDirectory() as tmp:
            fs = FeatureSet.open(write_set(Path(tmp), x, labels))
            del x
            t0 = time.perf_counter()
            res = audit_feature_set(fs, threshold=args.threshold, budget_bytes=args.memory_gb * 1e9)
            seconds = time.perf_counter() - t0
        i, j, _ = res.pairs
        got = set(zip(i.tolist(), j.tolist()))
        want = {(min(a, b), max(a, b)) for a, b in planted.tolist()}
        row = {"rows": n, "dim": args.dim, "seconds": round(seconds, 2), "pairs": len(got),
               "planted_recall": round(len(got & want) / len(want), 4),
               "false_pairs": round(len(got - want) / max(len(got), 1), 4), "memory_gb": args.memory_gb,
               "peak_rss_mb": round(peak_rss_mb()), "threads": torch.get_num_threads()}
        results.append(row)
        print(json.dumps(row), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(results, indent=1))
    print("| rows | dim | seconds | rows/s | planted recall | false pairs | peak RSS MB |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rows']:,} | {r['dim']} | {r['seconds']} | {r['rows'] / r['seconds']:,.0f} | "
              f"{r['planted_recall']:.1%} | {r['false_pairs']:.1%} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
