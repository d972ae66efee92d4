"""The setup every text-aware head shares: unit features, text prototypes, checked labels, the logit scale."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from probes.fewshot._common import check_text_labels, l2rows, softmax, text_prototypes


class TextProblem(NamedTuple):
    x: np.ndarray       # [N, D] unit rows
    y: np.ndarray       # [N] in 0..K-1
    t: np.ndarray       # [K, D] unit text prototypes
    scale: float        # CLIP's logit scale


def text_problem(X: np.ndarray, y: np.ndarray, text: Any, logit_scale: float | None) -> TextProblem:
    t, scale = text_prototypes(text)
    y = check_text_labels(y, len(t), X.shape[1], t.shape[1])
    return TextProblem(l2rows(X), y, t, float(logit_scale or scale or 100.0))


def clap_multipliers(p: TextProblem) -> np.ndarray:
    """CLAP's class-adaptive penalty weights: the mean zero-shot probability of class k on its own shots.

    Silva-Rodriguez et al. 2024, Sec. 4.3: lambda_k = (1/|S_k|) sum_{i in S_k} softmax(s x_i T^T)_k; a
    class the text already recognises is kept close to its prototype, a poorly described one is freed.
    """
    probs = softmax(p.scale * p.x @ p.t.T)
    own = probs[np.arange(len(p.y)), p.y]
    counts = np.bincount(p.y, minlength=len(p.t))
    return np.bincount(p.y, weights=own, minlength=len(p.t)) / np.maximum(counts, 1)
