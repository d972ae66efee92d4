"""The embedded demo dataset: scikit-learn's bundled handwritten digits as an MVA-layout image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_digits(root: str | Path, *, size: int = 32, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 seed: int = 0) -> Path:
    """Write train_images/<class>/, val_images/<class>/ and test_images/mistery_category/ (PNG and JPEG mixed).

    Digits are dark on white like sketches; test files are named by a running number so the
    submission Id is the file stem, as in the MVA challenge. Returns the folder.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    n_val, n_test = int(len(order) * val_fraction), int(len(order) * test_fraction)
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    root = Path(root)
    for split, idx in parts.items():
        for k, i in enumerate(idx):
            pixels = (255 - digits.images[i] * (255 / 16)).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
            ext = "png" if k % 2 == 0 else "jpg"
            if split == "test":
                path = root / "test_images" / "mistery_category" / f"{k:05d}.{ext}"
            else:
                path = root / f"{split}_images" / CLASS_NAMES[digits.target[i]] / f"{split}_{i:05d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path, quality=95) if ext == "jpg" else img.save(path)
    return root
