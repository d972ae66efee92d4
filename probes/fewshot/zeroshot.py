"""Zero-shot CLIP: cosine to the class-name text prototypes, times the model's logit scale."""

from __future__ import annotations

from typing import Any

import numpy as np

from probes.fewshot._common import FewShotHead, check_text_labels, fit_temperature, l2rows, text_prototypes


class ZeroShotHead(FewShotHead):
    """Radford et al., "Learning Transferable Visual Models From Natural Language Supervision" (ICML 2021),
    Fig. 3 / Sec. 3.1.2: logits_k = s * cos(f, t_k), t_k the normalised mean of the class's template
    embeddings (each normalised first, as in open_clip's `build_zero_shot_classifier`).

    Parameters
    ----------
    logit_scale : float or None, default None (> 0)
        s; None takes the text set's `logit_scale`, else 100.0 (CLIP's learned value, clipped at 100).
    calibrate : bool, default True
        Fit a temperature on the training labels (NLL, one scalar): probabilities are calibrated, the
        argmax never changes. With no labels worth trusting, set False to get CLIP's exact logits.

    Fitted: `classes_` (0..K-1), `prototypes_` [K, D], `logit_scale_`, `temperature_`, `selection_`.
    """

    needs_text = True

    def __init__(self, *, logit_scale: float | None = None, calibrate: bool = True) -> None:
        self.logit_scale = logit_scale
        self.calibrate = calibrate

    def _validate_params_(self) -> None:
        if self.logit_scale is not None and not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0 or None; got {self.logit_scale}")

    def _fit(self, X: np.ndarray, y: np.ndarray, text: Any) -> None:
        protos, scale = text_prototypes(text)
        y = check_text_labels(y, len(protos), X.shape[1], protos.shape[1])
        self.prototypes_ = protos
        self.logit_scale_ = float(self.logit_scale or scale or 100.0)
        self.temperature_ = 1.0
        raw = self._raw(X)
        self.temperature_ = fit_temperature(raw, y) if self.calibrate else 1.0
        self.selection_ = "none (training-free; temperature on the shots)" if self.calibrate else "none"
        self.classes_ = np.arange(len(protos))

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return self.logit_scale_ * l2rows(X) @ self.prototypes_.T

    def decision_function(self, X: Any) -> np.ndarray:
        return self._raw(self._check_X(X)) / self.temperature_
