"""Few-shot heads on cached features (zero-shot, k-NN, prototypes, text-aware probes) and the few-shot protocol.

Each head is a scikit-learn estimator with `fit(X, y, *, text=None)`; `FEWSHOT_HEADS` maps the
`probes fit --head NAME` names to the classes (one registration per entry).
"""

from probes.fewshot.clap import ClapHead
from probes.fewshot.knn import KNNHead
from probes.fewshot.logistic import FewShotLogistic
from probes.fewshot.lpp import LPPHead
from probes.fewshot.prototype import PrototypeHead
from probes.fewshot.tip import TipAdapterHead
from probes.fewshot.wise import WiseHead
from probes.fewshot.zeroshot import ZeroShotHead
from probes.fewshot.zslogistic import ZSLogisticHead

FEWSHOT_HEADS = {
    "zeroshot": ZeroShotHead,
    "knn": KNNHead,
    "prototype": PrototypeHead,
    "clap": ClapHead,
    "lpp": LPPHead,
    "tip": TipAdapterHead,
    "wise": WiseHead,
    "zslogistic": ZSLogisticHead,
}

__all__ = ["FEWSHOT_HEADS", "ClapHead", "FewShotLogistic", "KNNHead", "LPPHead", "PrototypeHead", "TipAdapterHead",
           "WiseHead", "ZSLogisticHead", "ZeroShotHead"]
