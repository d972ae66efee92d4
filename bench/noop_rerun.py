"""A no-op rerun at scale: time and peak memory of `featstore extract` when every image is already stored.

    python bench/noop_rerun.py [--n 200000] [--keep DIR] [--threads 1,8] [--latency-us 0] [--broadcast]

Writes N tiny PNGs (a folder dataset, 100 classes, 256 distinct contents cycled), extracts them once with
`pixels`, then times a second run of the same command in a fresh process (wall seconds, peak RSS) and
reports which heavy modules the no-op imported. Keep DIR to reuse the dataset and store between runs.
`--threads 1,8` times the rerun once per scan thread count (FEATSTORE_SCAN_THREADS); `--latency-us L`
makes every os.scandir and os.stat of the rerun sleep L µs first: a model of a network filesystem's
round trip (a sleep, like a blocking syscall, releases the GIL), not a measurement of one.
`--broadcast` also times what torchrun's rank 0 sends instead of a rescan per rank: one scan, and
the pickled Dataset's size, pickle and unpickle times.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
LATENCY = ("import os, time\n"
           "_lat = float(os.environ['NOOP_LATENCY_US']) / 1e6\n"
           "def _slow(f):\n    return lambda *a, **k: (time.sleep(_lat), f(*a, **k))[1]\n"
           "os.scandir, os.stat = _slow(os.scandir), _slow(os.stat)\n")
PROBE = ("import json, resource, sys\n"
         "from featstore.cli import featstore_app\n"
         "try:\n    featstore_app(sys.argv[1:], prog_name='featstore')\nexcept SystemExit as e:\n    code = e.code\n"
         "heavy = [m for m in ('torch', 'open_clip', 'torchvision', 'timm') if m in sys.modules]\n"
         "print(json.dumps({'code': code, 'rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10, "
         "'imported': heavy}), file=sys.stderr)")


def write_dataset(root: Path, n: int) -> None:
    if (root / "done").exists():
        return
    blobs = []
    for k in range(256):
        buf = io.BytesIO()
        Image.new("L", (8, 8), k).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    for c in range(100):
        (root / "train_images" / f"c{c:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / "train_images" / f"c{i % 100:03d}" / f"{i:07d}.png").write_bytes(blobs[i % 256])
    (root / "done").write_text(str(n))


def featstore(data: Path, cache: Path, *, threads: int | None = None, latency_us: float = 0) -> tuple[float, dict]:
    """(wall s, the child's own report: exit code, peak RSS MiB, heavy modules imported)."""
    probe = (LATENCY if latency_us else "") + PROBE
    cmd = [sys.executable, "-c", probe, "extract", "--model", "pixels", "--data", str(data), "--cache", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOOP_LATENCY_US": str(latency_us)}
    if threads is not None:
        env["FEATSTORE_SCAN_THREADS"] = str(threads)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    try:
        info = json.loads(res.stderr.strip().splitlines()[-1])
    except (ValueError, IndexError):
        sys.exit(f"featstore crashed:\n{res.stderr[-3000:]}")
    if info["code"]:
        sys.exit(f"featstore failed:\n{res.stderr[-2000:]}")
    return wall, info


def broadcast_cost(data: Path) -> None:
    import pickle

    sys.path.insert(0, str(ROOT))
    from featstore.datasets import scan_dataset

    t0 = time.perf_counter()
    ds = scan_dataset(data, threads=1)
    t1 = time.perf_counter()
    blob = pickle.dumps(ds, protocol=pickle.HIGHEST_PROTOCOL)
    t2 = time.perf_counter()
    pickle.loads(blob)
    t3 = time.perf_counter()
    print(f"scan (1 thread) {t1 - t0:.2f} s; broadcast payload {len(blob) / 2**20:.1f} MiB, "
          f"pickle {t2 - t1:.2f} s, unpickle {t3 - t2:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--threads", default="", help="comma-separated scan thread counts to compare, e.g. 1,8")
    ap.add_argument("--latency-us", type=float, default=0.0)
    ap.add_argument("--broadcast", action="store_true")
    a = ap.parse_args()
    base = a.keep or Path(tempfile.mkdtemp(prefix="noop-"))
    data, cache = base / f"data{a.n}", base / f"cache{a.n}"
    t0 = time.perf_counter()
    write_dataset(data, a.n)
    print(f"dataset of {a.n:,} images: {time.perf_counter() - t0:.1f} s")
    if not cache.exists():
        wall, _ = featstore(data, cache)
        print(f"first extraction: {wall:.1f} s")
    if a.broadcast:
        broadcast_cost(data)
    for threads in [int(t) for t in a.threads.split(",") if t] or [None]:
        wall, info = featstore(data, cache, threads=threads, latency_us=a.latency_us)
        label = f" ({threads} scan threads{f', {a.latency_us:g} us simulated latency' if a.latency_us else ''})" \
            if threads is not None else ""
        print(f"no-op rerun{label}: {wall:.2f} s, peak RSS {info['rss_mib']} MiB, "
              f"imported {info['imported'] or 'none of torch/timm/open_clip/torchvision'}")


if __name__ == "__main__":
    main()
