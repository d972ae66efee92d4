"""Temperature scaling is kept only where it calibrates (lower ECE on the selection data)."""

from __future__ import annotations

import numpy as np

import pytest

from probes.calibration import apply_temperature, brier_temperature, choose_temperature, fit_temperature
from probes.metrics import expected_calibration_error


def test_overconfident_softmax_is_cooled() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(2000, 10)) * 3
    logits[np.arange(2000), y] += 3  # right ~70% of the time, far more confident than that
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    t = choose_temperature(logp, y)
    assert t == brier_temperature(logp, y) and t > 1.5
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


def test_brier_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 50)) * 3
    y = np.array([rng.choice(50, p=np.exp(r) / np.exp(r).sum()) for r in logits])
    assert brier_temperature(logits / 8, y) == pytest.approx(1 / 8, rel=0.1)  # a proper score: consistent


def test_confident_mistakes_do_not_leave_the_rest_underconfident() -> None:
    """Many classes, margins that vary, 3% confident mistakes (label noise): the NLL-optimal T warms every row
    to pay for the mistakes (ECE 0.13); the Brier-optimal T, bounded per row, calibrates the rest (0.05)."""
    rng = np.random.default_rng(0)
    n, k = 3000, 300
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += rng.uniform(0, 6, n)
    noisy = rng.random(n) < 0.03
    z[np.arange(n)[noisy], (y[noisy] + 1) % k] += 9
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    nll = expected_calibration_error(apply_temperature(logp, fit_temperature(logp, y)), y)
    chosen = expected_calibration_error(apply_temperature(logp, choose_temperature(logp, y)), y)
    assert nll > 0.1 and chosen < 0.07
