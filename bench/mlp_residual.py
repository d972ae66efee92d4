"""Benchmark: the residual MLP head against the logistic head; fp16 rounding; run size; the whole command.

Usage: python bench/mlp_residual.py [--quick] [--no-cli] [--digits CACHE]

On bench/probe_fit.py's features (20,000 x 1408, 500 classes; --quick: 4,000 x 1408, 100 classes):
val top-1 of ``LogisticHead()`` and ``MLPHead()``, the MLP's val top-1 before and after its weights are
rounded to fp16 (the unrounded weights are kept aside during the same fit), ECE before / after the
temperature ``probes fit`` chooses, the head file's size in fp32 and fp16, and (unless --no-cli) the
whole ``probes fit --head mlp`` / ``--head logistic`` commands timed from outside, each a fresh process.
``--digits CACHE``: the same head comparison on the ``pixels`` set of a ``make demo`` store.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def probe_fit_module():
    """bench/probe_fit.py (features, the imported store and the timed `probes fit` command live there)."""
    spec = importlib.util.spec_from_file_location("probe_fit", REPO / "bench" / "probe_fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def head_bytes(state: dict, *, fp32: bool) -> int:
    """The size of ``head.safetensors`` for ``state`` (every tensor widened to fp32 with ``fp32``)."""
    from safetensors.torch import save

    return len(save({k: v.float() if fp32 and v.is_floating_point() else v for k, v in state.items()}))


def compare(X, y, Xv, yv) -> dict:
    """Both heads on one split; the MLP's unrounded weights recorded to measure what rounding changed."""
    import probes.heads.mlp as mlp_module
    from probes.calibration import apply_temperature, choose_temperature
    from probes.heads import LogisticHead, MLPHead
    from probes.metrics import expected_calibration_error as ece

    t0 = time.perf_counter()
    logistic = LogisticHead().fit(X, y, X_val=Xv, y_val=yv)
    t1 = time.perf_counter()
    unrounded = []
    rounder = mlp_module.round_to_half
    mlp_module.round_to_half = lambda t: (unrounded.append(t.clone()), rounder(t))[1]
    try:
        head = MLPHead().fit(X, y, X_val=Xv, y_val=yv)
    finally:
        mlp_module.round_to_half = rounder
    t2 = time.perf_counter()
    full = MLPHead(**head.get_params())
    full.__dict__.update({**head.__dict__, "skip_": (unrounded[0].T.contiguous(), unrounded[1]),
                          "layers_": list(zip(unrounded[2::2], unrounded[3::2]))})
    logp = head.predict_log_proba(Xv)
    codes = np.searchsorted(head.classes_, yv)
    T = choose_temperature(logp, codes)
    state = head.state_dict()
    return {"logistic_top1": logistic.score(Xv, yv), "logistic_fit_s": t1 - t0, "mlp_fit_s": t2 - t1,
            "mlp_top1_fp16": head.score(Xv, yv), "mlp_top1_fp32": full.score(Xv, yv),
            "mlp_max_abs_prob_change": float(np.abs(head.predict_proba(Xv) - full.predict_proba(Xv)).max()),
            "best_epoch": head.best_epoch_, "epochs_run": head.epochs_run_, "T": T,
            "ece_before": ece(np.exp(logp), codes), "ece_after": ece(apply_temperature(logp, T), codes),
            "head_bytes_fp32": head_bytes(state, fp32=True), "head_bytes_fp16": head_bytes(state, fp32=False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 classes, 4,000 train rows")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-command timings")
    ap.add_argument("--digits", type=Path, help="a `make demo` cache: compare the heads on its pixels set too")
    args = ap.parse_args()
    pf = probe_fit_module()
    data = pf.features(args.quick)
    report = {}
    if not args.no_cli:
        store = pf.imported_store(data)
        for head in ("logistic", "mlp"):
            t0 = time.perf_counter()
            info = pf.run_cli(head, store)
            report[f"cli_{head}"] = {**info, "wall_s": time.perf_counter() - t0}
    with np.load(data) as a:
        report["bench"] = compare(a["X"], a["y"], a["X_val"], a["y_val"])
    if args.digits:
        from featstore.store import open_feature_set

        fs = open_feature_set("pixels", cache=args.digits)
        tr, va = fs.load("train"), fs.load("val")
        report["digits"] = compare(tr.features, tr.labels, va.features, va.labels)
    print(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
