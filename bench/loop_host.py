"""The extraction loop thread's host time per batch, shard writes on the loop thread vs on the writer thread (CPU).

    python bench/loop_host.py [--n 2048] [--batch 64] [--device-ms 183] [--dim 1408] [--shard-rows 512]

A fake encoder emulates the GPU: each forward sleeps --device-ms (releasing the GIL, as a thread waiting
on a CUDA event does) and returns random float32 rows of --dim (1408: EVA-g's width, so shards weigh what
they would). The images are tiny PNGs decoded in the loop thread (workers 0, the CPU default), so what
remains besides the emulated device is the loop's own host work: decode, bookkeeping, waiting for the
rows and handing them over, and, before this change, building, writing and fsyncing each shard.
--shard-rows 512 writes a shard every 8 batches of 64 (the default 4096 every 64 batches: same bytes,
rarer and longer stalls). The cache folder sits under --cache-dir (default: a temp dir) so fsync hits a
real disk there. One torch thread, as under torchrun. --slow-fsync-ms adds a network filesystem's commit time to every fsync.

Prints, for write_thread off (before) and on (after), over the loop alone (scan, commit and compaction
excluded): images/s, wall ms per batch, host ms per batch (wall minus the emulated device: decode
included), the loop thread's host ms per batch in launching (bookkeeping, row selection, the forward's
own host side, the device excluded), and its ms per batch in row hand-over (mean and worst: waiting for
the rows, non-finite check, float16, queue, and before this change the shard writes).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featstore.encoders import register_encoder  # noqa: E402
from featstore.encoders.pixels import PixelsBackend, pixels_spec  # noqa: E402
from featstore.encoders.registry import register_backend  # noqa: E402
from featstore.extract import ExtractOptions, extract  # noqa: E402
from featstore.job import Job  # noqa: E402

SETTINGS = {"device_s": 0.183, "dim": 1408, "slept": 0.0}  # slept: the emulated device's actual time


class _Sleepy(torch.nn.Module):
    """The GPU, emulated: the forward takes device_s and returns random rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        time.sleep(SETTINGS["device_s"])
        SETTINGS["slept"] += time.perf_counter() - t0  # a loaded machine oversleeps: host times exclude that too
        return torch.randn(len(x), SETTINGS["dim"])


class _SleepyBackend(PixelsBackend):
    prefix = "sleepy-bench"

    def build(self, spec, *, weights, random_weights):
        return _Sleepy()


def _register(dim: int) -> None:
    register_backend(_SleepyBackend())
    base = pixels_spec("sleepy_bench")
    register_encoder("sleepy_bench")(lambda: dataclasses.replace(base, backend="sleepy-bench", dim=dim,
                                                                 outputs=(("flatten", dim),)))


def make_images(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "train" / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / f"{i:07d}.png")
    return root


def run(data: Path, cache: Path, *, batch: int, shard_rows: int, write_thread: bool) -> dict:
    stores: list[float] = []
    launches: list[float] = []
    loop: list[float] = []
    store, compute, launch = Job._store, Job._compute, Job._launch

    def timed_launch(self, *a, **k):
        t0 = time.perf_counter()
        out = launch(self, *a, **k)
        launches.append(time.perf_counter() - t0)
        return out

    def timed(self, *a, **k):
        t0 = time.perf_counter()
        store(self, *a, **k)
        stores.append(time.perf_counter() - t0)

    def timed_loop(self, *a, **k):  # the loop alone, writer thread drained: no scan, commit or compaction
        t0 = time.perf_counter()
        compute(self, *a, **k)
        loop.append(time.perf_counter() - t0)

    Job._store, Job._compute, Job._launch = timed, timed_loop, timed_launch
    SETTINGS["slept"] = 0.0
    try:
        rep = extract(model="sleepy_bench", data=data, cache=cache,
                      options=ExtractOptions(device="cpu", workers=0, batch_size=batch, shard_rows=shard_rows,
                                             write_thread=write_thread))
    finally:
        Job._store, Job._compute, Job._launch = store, compute, launch
    n, batches, wall = rep.splits[0].extracted, len(stores), sum(loop)
    per_batch, device = wall / batches * 1e3, SETTINGS["slept"] / batches * 1e3
    return {"write_thread": write_thread, "images": n, "images_per_s": n / wall, "wall_ms_per_batch": per_batch,
            "host_ms_per_batch": per_batch - device, "launch_host_ms": sum(launches) / batches * 1e3 - device,
            "handover_ms_mean": float(np.mean(stores)) * 1e3, "handover_ms_max": float(np.max(stores)) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device-ms", type=float, default=183.0, help="default: 64 images at 350/s, EVA-g/336 on an H100")
    ap.add_argument("--dim", type=int, default=1408)
    ap.add_argument("--shard-rows", type=int, default=512)
    ap.add_argument("--slow-fsync-ms", type=float, default=0.0,
                    help="add this to every fsync: a network filesystem's (NFS, Lustre) commit, emulated")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the stores go (default: a temp dir)")
    a = ap.parse_args()
    SETTINGS.update(device_s=a.device_ms / 1e3, dim=a.dim)
    # one intra-op thread, as torchrun sets it: on a busy machine torch's thread pool turns each small
    # host op into a wait for a core another process holds (12 ms for one normalisation measured here)
    torch.set_num_threads(1)
    if a.slow_fsync_ms:
        fsync = os.fsync
        os.fsync = lambda fd: (time.sleep(a.slow_fsync_ms / 1e3), fsync(fd))[1]
    _register(a.dim)
    with tempfile.TemporaryDirectory(dir=a.cache_dir) as d:
        data = make_images(Path(d) / "data", a.n)
        rows = [run(data, Path(d) / f"cache-{on}", batch=a.batch, shard_rows=a.shard_rows, write_thread=on)
                for on in (False, True)]
    print(f"{a.n} images, batch {a.batch}, emulated device {a.device_ms:g} ms/batch, dim {a.dim}, "
          f"shard every {a.shard_rows} rows" + (f", fsync +{a.slow_fsync_ms:g} ms" if a.slow_fsync_ms else "") + "\n")
    print("| shard writes | images/s | wall ms/batch | host ms/batch | launch host ms/batch | hand-over ms/batch "
          "(mean) | (worst) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        where = "writer thread (after)" if r["write_thread"] else "loop thread (before)"
        print(f"| {where} | {r['images_per_s']:.0f} | {r['wall_ms_per_batch']:.1f} | {r['host_ms_per_batch']:.1f} "
              f"| {r['launch_host_ms']:.2f} | {r['handover_ms_mean']:.2f} | {r['handover_ms_max']:.1f} |")


if __name__ == "__main__":
    main()
