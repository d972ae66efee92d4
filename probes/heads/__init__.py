"""Classifier heads on cached features (scikit-learn estimators), registered by name."""

from probes.heads.base import NotFittedError, ProbeHead
from probes.heads.logistic import LogisticHead
from probes.heads.mlp import MLPHead
from probes.heads.registry import create_head, get_head, head_names, head_parameters, register_head

__all__ = ["LogisticHead", "MLPHead", "NotFittedError", "ProbeHead", "create_head", "get_head", "head_names",
           "head_parameters", "register_head"]
