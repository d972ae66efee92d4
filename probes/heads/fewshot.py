"""Registers the few-shot heads of ``probes.fewshot`` (zero-shot, k-NN, prototypes, text-aware probes)."""

from probes.fewshot import FEWSHOT_HEADS
from probes.heads.registry import register_head

for _name, _cls in FEWSHOT_HEADS.items():
    register_head(_name)(_cls)
