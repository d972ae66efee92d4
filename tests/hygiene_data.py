"""Generated data for the hygiene tests: a CSV set whose train holds blurred and exact copies of itself."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SIZE = 32  # the pixels encoder's size: vectors are the pixels themselves


def blob_image(rng: np.random.Generator, centres: np.ndarray) -> Image.Image:
    """Bright blobs on black: the class's blobs, jittered, plus as many blobs at random places."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    img = np.zeros((SIZE, SIZE))
    jitter = centres + rng.normal(0, 3.0, centres.shape)
    noise = rng.uniform(2, SIZE - 2, (len(centres) + 2, 2))
    for cy, cx in np.concatenate([jitter, noise]):
        img += rng.uniform(0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5 ** 2))
    return Image.fromarray(np.clip(img * 200, 0, 255).astype(np.uint8))


def write_copies_csv(root: Path, *, classes: int = 8, per_class: int = 14, test_per_class: int = 30,
                     copies: bool = True, seed: int = 0) -> np.ndarray:
    """Boostcamp layout; with ``copies`` each train image also appears blurred and byte-identical (the
    seed team's offline augmentation). Returns the hidden test labels in test.csv order."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(6, SIZE - 6, (classes, 3, 2))
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows, test_labels = [], []
    for k in range(classes):
        for n in range(per_class):
            im = blob_image(rng, centres[k])
            name = f"c{k}_{n}.png"
            im.save(root / "train" / name)
            rows.append((f"class{k}", name, k))
            if copies:
                im.filter(ImageFilter.GaussianBlur(0.7)).save(root / "train" / f"c{k}_{n}_blur.png")
                im.save(root / "train" / f"c{k}_{n}_copy.png")
                rows += [(f"class{k}", f"c{k}_{n}_blur.png", k), (f"class{k}", f"c{k}_{n}_copy.png", k)]
    order = rng.permutation(classes * test_per_class)
    for t in order:
        blob_image(rng, centres[t % classes]).save(root / "test" / f"t{t:04d}.png")
        test_labels.append(t % classes)
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class_name", "image_path", "target"])
        w.writerows(rows)
    with open(root / "test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path"])
        w.writerows([[f"t{t:04d}.png"] for t in order])
    return np.asarray(test_labels)


def _augment(im: Image.Image, kind: int, rng: np.random.Generator) -> Image.Image:
    """What offline augmentation does to a copy: blur, JPEG re-encode, a one-pixel shift, darker."""
    import io

    from PIL import ImageChops

    if kind == 0:
        return im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.0))))
    if kind == 1:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(60, 90)))
        return Image.open(io.BytesIO(buf.getvalue())).convert("L")
    if kind == 2:
        return ImageChops.offset(im, int(rng.choice([-1, 1])), 0)
    return im.point(lambda v: int(v * rng.uniform(0.85, 0.95)))


def write_planted_folders(root: Path, *, classes: int = 6, counts: dict[str, int] | None = None, rate: float = 0.15,
                          seed: int = 1) -> set[frozenset[tuple[str, str]]]:
    """Folder layout (train/ val/ test/) where ~``rate`` of the images get an augmented copy, in train
    mostly, else in val or test (a leak). Returns the planted pairs as {(split, id), (split, id)}."""
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 40, "val": 10, "test": 10}
    centres = rng.uniform(6, SIZE - 6, (classes, 3, 2))
    for split in counts:
        for k in range(classes):
            (root / split / f"k{k}").mkdir(parents=True)
    planted = set()
    for k in range(classes):
        for split, n in counts.items():
            for i in range(n):
                im, name = blob_image(rng, centres[k]), f"k{k}/{split}{i}.png"
                im.save(root / split / name)
                if rng.random() < rate:
                    other, copy = str(rng.choice(list(counts), p=[0.6, 0.2, 0.2])), f"k{k}/{split}{i}_copy.png"
                    _augment(im, int(rng.integers(4)), rng).save(root / other / copy)
                    planted.add(frozenset([(split, name), (other, copy)]))
    return planted
