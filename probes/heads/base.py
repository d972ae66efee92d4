"""``ProbeHead``: the scikit-learn estimator base of the heads (prediction, checks, serialisation)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from torch import Tensor

from probes.heads.device import resolve_device
from probes.heads.inputs import check_features, check_width
from probes.heads.params import Param, check_params

__all__ = ["NotFittedError", "ProbeHead"]


class ProbeHead(ClassifierMixin, BaseEstimator):
    """What the heads share. Subclasses declare ``PARAMS`` (validated by ``check_params`` before a
    fit touches any state), implement ``fit`` (fitted attributes set last, in one step) and
    ``_logits`` (float32 tensor in, raw class scores out), and ``state_dict``/``from_state_dict``."""

    PARAMS: ClassVar[dict[str, Param]] = {}

    def check_params(self) -> None:
        """Every parameter in its valid range, or one ValueError naming it and the range."""
        check_params(self, self.PARAMS)

    def refit_params(self) -> dict[str, Any]:
        """Parameters that refit the chosen model on more rows without a val split."""
        return self.get_params()

    def _tensor(self, X: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(X)).to(resolve_device(self.device))

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    @torch.no_grad()
    def logits(self, X: Any) -> np.ndarray:
        """Raw class scores, float32 [n, n_classes] (a column per class, also for 2 classes)."""
        self._check_fitted()
        X = check_width(check_features(X), self.n_features_in_, owner=type(self).__name__)
        return self._logits(self._tensor(X)).cpu().numpy()

    def decision_function(self, X: Any) -> np.ndarray:
        """scikit-learn's convention: the logits, or for 2 classes one column, positive for ``classes_[1]``."""
        scores = self.logits(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax probabilities, float32 [n, n_classes], columns in ``classes_`` order."""
        return torch.softmax(torch.from_numpy(self.logits(X)), 1).numpy()

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Exact log-probabilities (no log of rounded probabilities): what calibration works on."""
        return torch.log_softmax(torch.from_numpy(self.logits(X)), 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        scores = self.logits(X)  # checks the head is fitted first
        return self.classes_[scores.argmax(1)]

    def _logits(self, X: Tensor) -> Tensor:
        raise NotImplementedError

    # --- serialisation: tensors only, so the dict goes straight into safetensors
    def _classes_state(self) -> dict[str, Tensor]:
        if np.issubdtype(self.classes_.dtype, np.integer):
            return {"classes": torch.from_numpy(self.classes_.astype(np.int64))}
        data = json.dumps([str(c) for c in self.classes_]).encode()
        return {"classes_json": torch.frombuffer(bytearray(data), dtype=torch.uint8)}

    @staticmethod
    def _classes_from(state: dict[str, Tensor]) -> np.ndarray:
        if "classes" in state:
            return np.asarray(state["classes"].cpu().numpy())
        return np.array(json.loads(bytes(np.asarray(state["classes_json"].cpu().numpy())).decode()))
