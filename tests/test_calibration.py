"""Temperature scaling is kept only where it calibrates (lower ECE on the selection data)."""

from __future__ import annotations

import numpy as np

from probes.calibration import apply_temperature, choose_temperature, fit_temperature
from probes.metrics import expected_calibration_error


def test_overconfident_softmax_is_cooled() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(2000, 10)) * 3
    logits[np.arange(2000), y] += 3  # right ~70% of the time, far more confident than that
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    t = choose_temperature(logp, y)
    assert t == fit_temperature(logp, y) and t > 1.5
    assert expected_calibration_error(apply_temperature(logp, t), y) < expected_calibration_error(np.exp(logp), y) / 3


def test_votes_with_exact_zeros_keep_t_1() -> None:
    """A k-NN vote: the true class often gets probability 0; the NLL-optimal T would flatten every row."""
    rng = np.random.default_rng(1)
    n, k = 3000, 200
    y = rng.integers(0, k, n)
    probs = np.zeros((n, k))
    hit = rng.random(n) < 0.6
    probs[np.arange(n), np.where(hit, y, (y + 1) % k)] = 0.6
    probs[np.arange(n), (y + 2) % k] += 0.4
    logp = np.log(np.clip(probs, 1e-30, None)).astype(np.float32)
    assert fit_temperature(logp, y) > 5  # what plain NLL fitting would do
    assert expected_calibration_error(apply_temperature(logp, fit_temperature(logp, y)), y) > 0.2
    assert choose_temperature(logp, y) == 1.0  # ECE stays at ~0.01
