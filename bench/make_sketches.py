"""Deterministic classifysketch-like test images: black pen strokes on white, 1111x1111 grayscale JPEG.

    python bench/make_sketches.py OUT_DIR --n 2000 [--classes 20] [--size 1111]

Writes the MVA layout OUT_DIR/train_images/<class>/<index>.jpg. Image i is drawn from seed i alone,
so a folder of N images is always the same bytes, whatever the machine or the number of processes.
A `.complete` file records what was generated; asking again for the same set returns at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 1111
QUALITY = 90  # typical of scanned / exported sketches; 4:2:0 irrelevant for a 1-channel JPEG


def draw_sketch(seed: int, size: int = SIZE) -> Image.Image:
    """A mode-L picture: 8-40 smooth pen strokes (random walks with inertia), 2-7 px wide, on white paper."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size  # the drawing sits around a centre, like an object sketch
    for _ in range(int(rng.integers(8, 41))):
        x, y = cx + rng.normal(0, size / 6), cy + rng.normal(0, size / 6)
        heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(4, 14)
        points = [(x, y)]
        for _ in range(int(rng.integers(10, 80))):
            heading += rng.normal(0, 0.25)
            x = min(max(x + speed * math.cos(heading), 0), size - 1)
            y = min(max(y + speed * math.sin(heading), 0), size - 1)
            points.append((x, y))
        ink = int(rng.integers(0, 60))  # pens are not all pure black
        draw.line(points, fill=ink, width=int(rng.integers(2, 8)), joint="curve")
    return img


def _write(args: tuple[Path, int, int]) -> None:
    path, seed, size = args
    draw_sketch(seed, size).save(path, "JPEG", quality=QUALITY)


def make_sketches(root: str | os.PathLike, n: int, *, classes: int = 20, size: int = SIZE, jobs: int | None = None) -> Path:
    """Create (or reuse) `n` sketches under root/train_images/, spread round-robin over `classes` folders."""
    root = Path(root)
    params = {"n": n, "classes": classes, "size": size, "quality": QUALITY, "version": 1}
    marker = root / ".complete"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    jobs_list = []
    for i in range(n):
        folder = root / "train_images" / f"class_{i % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs_list.append((folder / f"{i:06d}.jpg", i, size))
    with ProcessPoolExecutor(max_workers=jobs or os.cpu_count()) as pool:
        list(pool.map(_write, jobs_list, chunksize=64))
    marker.write_text(json.dumps(params))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--size", type=int, default=SIZE)
    args = ap.parse_args()
    print(make_sketches(args.out, args.n, classes=args.classes, size=args.size))


if __name__ == "__main__":
    main()
