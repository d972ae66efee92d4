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
