"""Host-side cost per batch on the extraction loop thread, before and after the issue-14 changes (CPU only).

    python bench/host_batch.py [--batch 64] [--size 336] [--repeat 20] [--weights-mb 256]

(1) Selecting the rows to encode from a decoded uint8 batch: Python-list fancy indexing (before),
    index_select, and passing the batch through when every row is kept (after; the common case).
    One thread, as torchrun sets OMP_NUM_THREADS=1.
(2) Normalisation: mean/std built per batch (before) vs cached per device (after). On a CPU this is only
    the tensor construction; on CUDA the "before" adds two blocking host-to-device uploads per batch.
(3) Weights identity: sha256 of a --weights-mb file read cold-ish (first run) vs from the hash cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featstore.encoders.preprocess import Preprocess  # noqa: E402
from featstore.forward import select_rows as _rows  # noqa: E402


def _ms(fn, repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=336)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--weights-mb", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8)
    keep = list(range(a.batch))
    rows = [
        ("select rows: pixels[list] (before)", lambda: x[keep]),
        ("select rows: index_select (some rows dropped)", lambda: x.index_select(0, torch.tensor(keep))),
        ("select rows: pass-through (all kept, after)", lambda: _rows(x, keep)),
    ]
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

    def stats_per_batch() -> None:
        torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    pre = Preprocess(geometry=(), mean=mean, std=std)
    from featstore.encoders.preprocess import _stats

    rows += [("mean/std per batch (before)", stats_per_batch),
             ("mean/std cached (after)", lambda: _stats(pre.mean, pre.std, torch.device("cpu")))]
    print(f"batch {a.batch} x 3 x {a.size} x {a.size} uint8, 1 thread, mean of {a.repeat}")
    print("| step | ms per batch |\n|---|---|")
    for name, fn in rows:
        print(f"| {name} | {_ms(fn, a.repeat):.3f} |")
    if a.weights_mb:
        with tempfile.TemporaryDirectory() as d:
            os.environ["FEATSTORE_HASH_CACHE"] = str(Path(d) / "hashes.json")
            from featstore.encoders.weights import file_identity

            w = Path(d) / "w.pt"
            w.write_bytes(os.urandom(a.weights_mb << 20))
            for label in ("first run (hashes the file)", "next run (hash cache)"):
                t0 = time.perf_counter()
                file_identity(w)
                print(f"| weights identity, {a.weights_mb} MB, {label} | {(time.perf_counter() - t0) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
