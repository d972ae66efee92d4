"""Nearest class mean by cosine: the 1-shot baseline that needs no text and no hyper-parameter."""

from __future__ import annotations

from typing import Any

import numpy as np

from probes.fewshot._common import FewShotHead, fit_temperature, l2rows


class PrototypeHead(FewShotHead):
    """Snell et al., "Prototypical Networks for Few-shot Learning" (NeurIPS 2017), Eq. 1-2, with cosine
    instead of squared Euclidean distance (as in Chen et al. 2019, "A Closer Look at Few-shot
    Classification", Baseline++): c_k = normalise(mean_i normalise(x_i) over class k),
    logits_k = cos(x, c_k) / temperature.

    Parameters
    ----------
    temperature : float or None, default None (> 0); None fits it on the train rows (NLL), which
        only calibrates probabilities: the predicted class is the nearest prototype either way.

    Fitted: `classes_`, `prototypes_` [K, D], `temperature_`, `selection_`.
    """

    def __init__(self, *, temperature: float | None = None) -> None:
        self.temperature = temperature

    def _validate_params_(self) -> None:
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 or None; got {self.temperature}")

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        classes, yi = np.unique(y, return_inverse=True)
        xn = l2rows(X)
        sums = np.zeros((len(classes), X.shape[1]), dtype=np.float64)
        np.add.at(sums, yi, xn)
        self.prototypes_ = l2rows(sums).astype(np.float32)
        self.temperature_ = float(self.temperature or fit_temperature(xn @ self.prototypes_.T, yi))
        self.selection_ = "fixed" if self.temperature else "none (temperature on the train rows)"
        self.classes_ = classes

    def decision_function(self, X: Any) -> np.ndarray:
        return l2rows(self._check_X(X)) @ self.prototypes_.T / self.temperature_
