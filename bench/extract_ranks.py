"""featstore extract as 2 torchrun CPU ranks vs 1 process: throughput, and peak memory per rank at 2 sizes.

    python bench/extract_ranks.py [--sizes 400 2000] [--repeats 2] [--quiet-wait 120] [--parts ranks decode]

Images: classifysketch-like 1111x1111 grayscale JPEGs from bench/make_sketches.py (cached under
bench/out/sketches_<n>/). Encoder `pixels` (32x32 grayscale, no network): the run is bound by JPEG
decoding and resizing, which is what ranks (and DataLoader workers) spread over cores.

Variants, each a fresh process tree and a fresh cache folder, interleaved, best of --repeats:
  1 proc  -j1  `featstore extract` with its CPU default of cores/2 = 1 decode worker
  1 proc  -j2  the same with 2 decode workers (the one-machine alternative to ranks)
  2 ranks -j1  `torchrun --standalone --nproc-per-node 2 -m featstore extract` (gloo), 1 decode worker each

Throughput: images/s of the extraction loop as featstore reports it (torchrun: all images / slowest
rank), and of the whole command with start-up. Memory: /proc/<pid>/status VmHWM (peak RSS) of each
rank's main process and of its decode workers, polled every 50 ms. Before each run the script waits
(up to --quiet-wait s) for the machine to be idle, since other jobs on 2 cores skew everything;
the busy share seen just before each run is recorded.

`decode` part: what one core feeds a GPU running eva_giant_336 (336x336 squash): featstore's worker
path (read, sha1, decode, resize to uint8) at torch 1 thread, on ImageNet-like 500x375 RGB JPEGs
(~100 KB, q90) and on the 1111x1111 sketches: images/s per decode core, for the README estimate.

Writes (updates) bench/out/extract_ranks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(BENCH))

from make_sketches import make_sketches  # noqa: E402

VARIANTS = {
    "1 proc -j1": ["featstore", "-j", "1"],
    "1 proc -j2": ["featstore", "-j", "2"],
    "2 ranks -j1": ["torchrun", "-j", "1"],
}


@dataclass
class Run:
    variant: str
    images: int
    wall_s: float
    rate: float  # images/s of the extraction loop
    rank_hwm_mib: list[float] = field(default_factory=list)  # per rank main process
    worker_hwm_mib: list[float] = field(default_factory=list)  # per decode worker
    busy_before: float = 0.0


# ----------------------------------------------------------------------------- measuring


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPU time that was not idle over the next `seconds`."""
    def sample() -> tuple[int, int]:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(vals), vals[3] + vals[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit: float) -> float:
    """Wait until the machine is idle (< 10 % busy over 1 s) or `limit` s passed; returns the last busy share."""
    deadline = time.monotonic() + limit
    busy = cpu_busy()
    while busy > 0.10 and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                kids.setdefault(int(_status(int(d.name))["PPid"]), []).append(int(d.name))
            except (OSError, KeyError, ValueError):
                continue
    return kids


class TreeMemory:
    """Polls VmHWM of every process under `root`: ranks are the featstore processes, workers their children."""

    def __init__(self, root: int, *, torchrun: bool) -> None:
        self.root, self.torchrun = root, torchrun
        self.ranks: dict[int, int] = {}  # pid -> VmHWM kB
        self.workers: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            kids = _children()
            ranks = kids.get(self.root, []) if self.torchrun else [self.root]
            for group, pids in ((self.ranks, ranks), (self.workers, [w for r in ranks for w in kids.get(r, [])])):
                for pid in pids:
                    try:
                        group[pid] = max(group.get(pid, 0), int(_status(pid)["VmHWM"].split()[0]))
                    except (OSError, KeyError, ValueError):
                        continue
            self._stop.wait(0.05)


def extraction_rate(stdout: str) -> float:
    """images/s of the train row of featstore's report table (extracted / seconds of the slowest rank)."""
    row = next(line for line in stdout.splitlines() if line.startswith("│ train"))
    return float(row.split("│")[-2].replace(",", ""))


def run_variant(variant: str, data: Path, images: int, quiet_wait: float) -> Run:
    launcher, *extra = VARIANTS[variant]
    busy = wait_quiet(quiet_wait)
    cache = Path(tempfile.mkdtemp(prefix="ranks-", dir=OUT))
    args = ["extract", "--model", "pixels", "--data", str(data), "--cache", str(cache), "--device", "cpu", *extra]
    cmd = ([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "featstore", *args]
           if launcher == "torchrun" else [str(BIN / "featstore"), *args])
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "200"})
        with TreeMemory(proc.pid, torchrun=launcher == "torchrun") as mem:
            stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{variant} failed ({proc.returncode}):\n{stdout}\n{stderr}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    mib = lambda kb: round(kb / 1024, 1)  # noqa: E731
    return Run(variant, images, round(wall, 2), extraction_rate(stdout), [mib(v) for v in mem.ranks.values()],
               [mib(v) for v in mem.workers.values()], round(busy, 3))


# ----------------------------------------------------------------------------- decode cost per core


def photo_like(seed: int, size: tuple[int, int] = (500, 375)) -> "Image.Image":
    """Smooth colour fields plus grain: a JPEG of about ImageNet's typical size and byte count."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    low, mid = (Image.fromarray((rng.random((k, k * 4 // 3, 3)) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
                for k in (6, 24))
    arr = 0.6 * np.asarray(low, np.float32) + 0.4 * np.asarray(mid, np.float32) + rng.normal(0, 18, (*size[::-1], 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def decode_rate(files: list[Path], encoder: str) -> dict:
    """Images/s of featstore's decode worker path on one core (best of 2 passes over `files`)."""
    import torch

    from featstore.datasets import ImageItem
    from featstore.encoders import get_spec
    from featstore.encoders.preprocess import Preprocess
    from featstore.encoders.registry import backend_for
    from featstore.loader import ImageWork

    torch.set_num_threads(1)
    spec = get_spec(encoder)  # preprocessing only: the 1 B-parameter model is never built
    work = ImageWork([ImageItem(p.name, p, 0) for p in files],
                     Preprocess.from_transform(backend_for(spec).transform(spec), channels=spec.channels))
    best_s = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        decoded = [work[i] for i in range(len(work))]
        best_s = min(best_s, time.perf_counter() - t0)
    if failed := [d.error for d in decoded if d.pixels is None]:
        raise SystemExit(f"{len(failed)} images failed to decode: {failed[0]}")
    shape = tuple(decoded[0].pixels.shape)
    mean_kb = sum(p.stat().st_size for p in files) / len(files) / 1024
    return {"encoder": encoder, "images": len(files), "per_core_img_s": round(len(files) / best_s, 1),
            "out_shape": list(shape), "mean_file_kb": round(mean_kb, 1)}


def bench_decode(quiet_wait: float) -> dict:
    photos = OUT / "photos_500x375"
    if not (photos / ".complete").is_file():
        photos.mkdir(parents=True, exist_ok=True)
        for i in range(200):
            photo_like(i).save(photos / f"{i:04d}.jpg", "JPEG", quality=90)
        (photos / ".complete").write_text("200 photo-like 500x375 q90\n")
    sketches = sorted((make_sketches(OUT / "sketches_400", 400) / "train_images").glob("*/*.jpg"))[:200]
    out = {}
    for name, files in (("imagenet-like 500x375 RGB", sorted(photos.glob("*.jpg"))), ("sketch 1111x1111 gray", sketches)):
        busy = wait_quiet(quiet_wait)
        out[name] = {**decode_rate(files, "eva_giant_336"), "busy_before": round(busy, 3)}
        print(f"  decode {name}: {out[name]['per_core_img_s']} img/s per core", file=sys.stderr)
    return out


# ----------------------------------------------------------------------------- report


def best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


def markdown(results: dict[int, dict[str, Run]]) -> str:
    lines = ["| images | variant | extraction img/s | speed-up | whole command s | peak RSS per rank MiB | "
             "peak RSS per decode worker MiB |", "|---:|---|---:|---:|---:|---:|---:|"]
    for n, runs in results.items():
        base = runs["1 proc -j1"].rate
        for name, r in runs.items():
            lines.append(f"| {n:,} | {name} | {r.rate:,.1f} | {r.rate / base:.2f}x | {r.wall_s:.1f} | "
                         f"{max(r.rank_hwm_mib, default=0):,.0f} | {max(r.worker_hwm_mib, default=0):,.0f} |")
    return "\n".join(lines)


def bench_ranks(sizes: list[int], repeats: int, quiet_wait: float) -> dict:
    results: dict[int, dict[str, Run]] = {}
    all_runs: list[Run] = []
    for n in sizes:
        data = make_sketches(OUT / f"sketches_{n}", n)
        tries: dict[str, list[Run]] = {v: [] for v in VARIANTS}
        for _ in range(repeats):
            for variant in VARIANTS:  # interleaved: a slow spell hits every variant alike
                run = run_variant(variant, data, n, quiet_wait)
                print(f"  {n} {variant}: {run.rate:.1f} img/s, {run.wall_s:.1f} s, ranks {run.rank_hwm_mib} MiB, "
                      f"busy before {run.busy_before:.0%}", file=sys.stderr)
                tries[variant].append(run)
                all_runs.append(run)
        results[n] = {v: best(rs) for v, rs in tries.items()}
    table = markdown(results)
    print(table)
    return {"meta": {"cpus": os.cpu_count(), "encoder": "pixels", "image": "1111x1111 grayscale JPEG q90",
                     "repeats": repeats, "python": sys.version.split()[0]},
            "best": {n: {v: asdict(r) for v, r in rs.items()} for n, rs in results.items()},
            "runs": [asdict(r) for r in all_runs], "table": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 2000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for an idle machine per run")
    ap.add_argument("--parts", nargs="+", choices=["ranks", "decode"], default=["ranks", "decode"])
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / "extract_ranks.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    if "ranks" in args.parts:
        res["ranks"] = bench_ranks(args.sizes, args.repeats, args.quiet_wait)
    if "decode" in args.parts:
        res["decode"] = bench_decode(args.quiet_wait)
        for name, d in res["decode"].items():
            print(f"| decode for eva_giant_336, {name} (~{d['mean_file_kb']:.0f} KB) | {d['per_core_img_s']} img/s per core |")
    path.write_text(json.dumps({k: v for k, v in res.items() if k in ("ranks", "decode")}, indent=1))


if __name__ == "__main__":
    main()
