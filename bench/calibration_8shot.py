"""Calibration on the 500-class 8-shot case: the logistic and (residual) MLP heads, ECE before and after the
temperature `probes fit` chooses, and with T fitted on one random half of val and measured on the other.

Usage: python bench/calibration_8shot.py   (4,000 train = 8 a class, 2,500 val, 1408-d; ~10 s)
"""
import sys, time
sys.path.insert(0, __import__("os").path.dirname(__file__))
import numpy as np
from make_probe_features import make
from probes.heads.registry import create_head
from probes.calibration import log_probabilities, choose_temperature, apply_temperature
from probes.metrics import expected_calibration_error
(xtr, ytr), (xva, yva) = make(n_tr=4000)
rng = np.random.default_rng(0)
for name in ("logistic", "mlp"):
    t0 = time.perf_counter()
    head = create_head(name)
    head.fit(xtr, ytr, X_val=xva, y_val=yva)
    logp = log_probabilities(head, xva)
    codes = np.searchsorted(head.classes_, yva)
    T = choose_temperature(logp, codes)
    before = expected_calibration_error(np.exp(logp), codes)
    after = expected_calibration_error(apply_temperature(logp, T), codes)
    halves = []
    for _ in range(5):
        perm = rng.permutation(len(codes)); a, b = perm[:len(perm)//2], perm[len(perm)//2:]
        for f, e in ((a, b), (b, a)):
            t = choose_temperature(logp[f], codes[f]); halves.append(expected_calibration_error(apply_temperature(logp[e], t), codes[e]))
    print(f"{name}: val top-1 {(logp.argmax(1)==codes).mean():.2%}  T={T:.3g}  ECE {before:.3f} -> {after:.3f}  held-out halves {np.mean(halves):.3f}  ({time.perf_counter()-t0:.1f} s)")
