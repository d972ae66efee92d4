"""``Probe``: a fitted head with its input normalisation and temperature, what a run saves and loads back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from probes.calibration import apply_temperature, log_probabilities
from probes.data import Normalizer


@dataclass
class Probe:
    """Raw features in, calibrated probabilities out: ``softmax(log p_head(normalize(X)) / T)``."""

    head: Any
    normalizer: Normalizer
    temperature: float = 1.0

    @property
    def classes_(self) -> np.ndarray:
        return self.head.classes_

    @property
    def n_features_in_(self) -> int:
        return self.head.n_features_in_

    def raw_log_proba(self, X: np.ndarray) -> np.ndarray:
        """The head's own log-probabilities (before the temperature)."""
        return log_probabilities(self.head, self.normalizer.transform(np.asarray(X, dtype=np.float32)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return apply_temperature(self.raw_log_proba(X), self.temperature)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.raw_log_proba(X).argmax(1)]
