"""Temperature scaling: one scalar fitted on the selection data, applied to every probability saved."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def log_probabilities(head: Any, X: np.ndarray) -> np.ndarray:
    """Log-probabilities of a fitted head: its ``predict_log_proba`` when it has one (exact for the
    softmax heads), else ``log(predict_proba)``; clipped away from -inf either way."""
    if hasattr(head, "predict_log_proba"):
        return np.maximum(np.asarray(head.predict_log_proba(X), dtype=np.float32), np.float32(-69.0))
    return np.log(np.clip(np.asarray(head.predict_proba(X), dtype=np.float32), 1e-30, None))


def fit_temperature(logp: np.ndarray, codes: np.ndarray, *, steps: int = 50) -> float:
    """The temperature T minimising the val cross-entropy of ``softmax(logp / T)`` (convex in 1/T;
    Newton with damping, in float64). 1.0 when there is nothing to fit."""
    z = torch.from_numpy(np.asarray(logp, dtype=np.float64))
    z = torch.where(torch.isfinite(z), z, torch.full_like(z, -1e4))
    y = torch.from_numpy(np.asarray(codes, dtype=np.int64))
    if len(y) == 0:
        return 1.0
    target = z.gather(1, y[:, None])[:, 0]
    beta = 1.0
    for _ in range(steps):
        p = torch.softmax(beta * z, 1)
        mean = (p * z).sum(1)
        grad = (mean - target).mean().item()
        hess = ((p * z * z).sum(1) - mean * mean).mean().item()
        if hess <= 1e-12 or abs(grad) <= 1e-9 * max(hess, 1e-12):
            break
        beta = min(max(beta - grad / hess, 0.5 * beta), 2.0 * beta)  # damped: stays positive
    return float(1.0 / beta)


def choose_temperature(logp: np.ndarray, codes: np.ndarray) -> float:
    """``fit_temperature``, kept only when it lowers the ECE on the same data, else 1.0. A head whose
    probabilities hold exact zeros (a k-NN vote) has an unbounded NLL, and the NLL-optimal T then
    flattens every row: better NLL, worse calibration (k-NN at 500 classes: ECE 0.29 -> 0.36)."""
    from probes.metrics import expected_calibration_error

    temperature = fit_temperature(logp, codes)
    before = expected_calibration_error(apply_temperature(logp, 1.0), codes)
    after = expected_calibration_error(apply_temperature(logp, temperature), codes)
    return temperature if after <= before else 1.0


def apply_temperature(logp: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``softmax(logp / T)``, float32."""
    return torch.softmax(torch.from_numpy(np.asarray(logp, dtype=np.float32)) / float(temperature), 1).numpy()
