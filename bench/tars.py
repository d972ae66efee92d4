"""Folders vs webdataset tars: images/s of `featstore extract --model pixels` over the same images (CPU).

    python bench/tars.py [--n 4000] [--size 256] [--per-tar 1000]

Writes N random-noise PNGs (size x size, grayscale) in 10 class folders, packs the same bytes into tars
of --per-tar samples, extracts each layout once into its own store (workers 0, the CPU default) and
prints images/s and the scan time of each layout.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featstore.datasets import scan_dataset  # noqa: E402
from featstore.extract import ExtractOptions, extract  # noqa: E402


def make(base: Path, n: int, size: int, per_tar: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    folders, tars = base / "folders", base / "tars"
    samples = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="PNG")
        samples.append((f"c{i % 10}", f"{i:07d}", buf.getvalue()))
    for cls, stem, data in samples:
        (folders / "train" / cls).mkdir(parents=True, exist_ok=True)
        (folders / "train" / cls / f"{stem}.png").write_bytes(data)
    (tars / "train").mkdir(parents=True)
    (tars / "classes.txt").write_text("\n".join(f"c{k}" for k in range(10)) + "\n")
    for t in range(0, n, per_tar):
        with tarfile.open(tars / "train" / f"{t // per_tar:06d}.tar", "w") as tf:
            for cls, stem, data in samples[t:t + per_tar]:
                for name, blob in ((f"{cls}/{stem}.png", data), (f"{cls}/{stem}.txt", cls.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    tf.addfile(info, io.BytesIO(blob))
    return folders, tars


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--per-tar", type=int, default=1000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        folders, tars = make(Path(d), a.n, a.size, a.per_tar)
        print(f"{a.n} PNGs {a.size}x{a.size}, tars of {a.per_tar}\n\n| layout | scan s | extract images/s |\n|---|---:|---:|")
        for name, root in (("folders", folders), ("tars", tars)):
            t0 = time.perf_counter()
            scan_dataset(root)
            scan = time.perf_counter() - t0
            rep = extract(model="pixels", data=root, cache=Path(d) / f"cache-{name}",
                          options=ExtractOptions(device="cpu", workers=0))
            print(f"| {name} | {scan:.3f} | {rep.splits[0].rate:.0f} |")


if __name__ == "__main__":
    main()
