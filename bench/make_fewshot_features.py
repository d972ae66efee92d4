"""CLIP-like paired image/text features with known answers, for the few-shot heads.

100 classes in 20 superclasses of 5 (confusable siblings), dim 512. A class is a direction mu_k
(superclass part + own part). Image features = mu_y + anisotropic noise (power-law spectrum in a
random basis, so a few directions carry most of the nuisance) + a constant image offset; text
prototypes = mu_k + text noise (the class name describes the class imperfectly) + a constant text
offset: the modality gap of real CLIP embeddings, which cosine zero-shot survives because the
offset is shared by every class. 4 templates per class = the class's text point + small template noise.
Sized so cosine zero-shot is around 60% and a logistic probe on all 100 images per class around 85%
(measured numbers: see README "Few-shot heads").

Usage: python bench/make_fewshot_features.py OUT_DIR [--seed 0]
Writes OUT_DIR/train.npz, val.npz (features, labels, ids) and text.npz (classes, embeddings [K, T, D], logit_scale).
"""
from __future__ import annotations

import argparse
import os

import numpy as np


def make(*, seed: int = 0, n_classes: int = 100, n_super: int = 20, dim: int = 512, n_train: int = 100, n_val: int = 50,
         n_templates: int = 4, sub: float = 0.55, noise: float = 4.3, text_noise: float = 0.75, offset: float = 1.0,
         spectrum: float = 0.7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lam = np.arange(1, dim + 1) ** -spectrum
    lam *= dim / lam.sum()  # mean variance 1 per coordinate, concentrated in the first directions

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    sup = unit(rng.standard_normal((n_super, dim)))
    mu = unit(np.repeat(sup, n_classes // n_super, axis=0) + sub * unit(rng.standard_normal((n_classes, dim))))
    img_off, txt_off = offset * unit(rng.standard_normal(dim)), offset * unit(rng.standard_normal(dim))

    def images(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(n_classes), per_class)
        eps = (rng.standard_normal((len(y), dim)) * np.sqrt(lam)) @ basis.T * noise / np.sqrt(dim)
        return (mu[y] + eps + img_off).astype(np.float32), y

    text_point = mu + text_noise * rng.standard_normal((n_classes, dim)) / np.sqrt(dim)
    templates = text_point[:, None] + 0.15 * rng.standard_normal((n_classes, n_templates, dim)) / np.sqrt(dim)
    xt, yt = images(n_train)
    xv, yv = images(n_val)
    return {"train_x": xt, "train_y": yt, "val_x": xv, "val_y": yv,
            "text": unit(templates + txt_off).astype(np.float32)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    d = make(seed=args.seed)
    for split in ("train", "val"):
        y = d[f"{split}_y"]
        ids = np.array([f"c{c:03d}/{split}_{i:05d}.png" for i, c in enumerate(y)])
        np.savez(os.path.join(args.out, f"{split}.npz"), features=d[f"{split}_x"], labels=y, ids=ids)
    classes = np.array([f"c{c:03d}" for c in range(len(d["text"]))])
    np.savez(os.path.join(args.out, "text.npz"), classes=classes, embeddings=d["text"], logit_scale=np.float32(100.0))
    print(f"wrote {args.out}/train.npz, val.npz, text.npz")


if __name__ == "__main__":
    main()
