"""Benchmark: the few-shot protocol on CLIP-like features with known answers, on digits, and k-NN at 20k x 1408.

Usage: python bench/fewshot.py [--seeds 5] [--shots 1,2,4,8,16] [--parts synthetic,digits,knn,knn1m] [--rows N]
                               [--out bench/out/fewshot]

synthetic: bench/make_fewshot_features.py (100 classes, dim 512, 100 train / 50 val images per
  class), every head; also the full-data logistic (all 100 train images per class).
digits: scikit-learn's digits (64 pixel features) split half/half per class; knn, prototype, logistic.
knn: bench/make_probe_features.py (20,000 x 1408, 500 classes); KNNHead with k and T chosen
  on val, timed as a whole (fit + selection + predict), next to the repo's logistic head.
knn1m (only when asked): KNNHead on --rows (default 1M) x 256 synthetic rows, blocked top-k, time and peak RSS.
Prints markdown tables; writes OUT/<part>.json and OUT/<part>.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from probes.fewshot import KNNHead  # noqa: E402
from probes.fewshot.logistic import FewShotLogistic  # noqa: E402
from probes.fewshot.plot import plot_fewshot  # noqa: E402
from probes.fewshot.protocol import FewShotResult, run_protocol  # noqa: E402


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def table(res: FewShotResult) -> str:
    """Markdown: one row per head, one column per k (mean ± 95% half-width), plus seconds for all k."""
    ks = res.meta["shots"]
    lines = ["| head | " + " | ".join(f"k={k}" for k in ks) + " | s (all k, seeds) | selection |",
             "|---|" + "---:|" * len(ks) + "---:|---|"]
    for head in dict.fromkeys(r["head"] for r in res.rows):
        rows = {r["shots"]: r for r in res.rows if r["head"] == head}
        if head == "zeroshot":
            cells = [f"{100 * rows[0]['mean']:.1f}"] * len(ks)
        else:
            cells = [f"{100 * rows[k]['mean']:.1f} ± {100 * rows[k]['ci95']:.1f}" for k in ks]
        secs = sum(r["seconds"] for r in rows.values())
        sel = sorted({r["selection"] for r in rows.values()})
        lines.append(f"| {head} | " + " | ".join(cells) + f" | {secs:.1f} | {' / '.join(sel)} |")
    return "\n".join(lines)


def synthetic(args: argparse.Namespace) -> None:
    d = _load(REPO / "bench" / "make_fewshot_features.py", "make_fewshot_features").make(seed=0)
    res = run_protocol((d["train_x"], d["train_y"]), (d["val_x"], d["val_y"]), text=d["text"], shots=args.shots,
                       seeds=args.seeds, progress=lambda m: print("  " + m, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    full = FewShotLogistic().fit(d["train_x"], d["train_y"])
    res.meta["full_data_logistic"] = {"acc": float(full.score(d["val_x"], d["val_y"])), "lam": full.lam_,
                                      "seconds": time.perf_counter() - t0}
    _report("synthetic", res, args.out)
    f = res.meta["full_data_logistic"]
    print(f"full-data logistic (100 images/class, lam {f['lam']:g} by CV): {100 * f['acc']:.1f}% in {f['seconds']:.1f} s")


def digits(args: argparse.Namespace) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xt, xv, yt, yv = train_test_split(x.astype(np.float32), y, test_size=0.5, stratify=y, random_state=0)
    res = run_protocol((xt, yt), (xv, yv), shots=args.shots, seeds=args.seeds, heads=("knn", "prototype", "logistic"))
    _report("digits", res, args.out)


def knn_large(args: argparse.Namespace) -> None:
    maker = _load(args.probe_maker, "make_probe_features")
    (xt, yt), (xv, yv) = maker.make()
    t0 = time.perf_counter()
    head = KNNHead().fit(xt, yt, val=(xv, yv))
    acc = float(head.score(xv, yv))
    secs = time.perf_counter() - t0
    print(f"\n### k-NN on 20,000 x 1408 (500 classes)\n\nKNNHead (k in 10/20/100/200 x 5 temperatures, chosen on val):"
          f" {100 * acc:.1f}% val top-1, k={head.k_}, T={head.temperature_}, fit + selection + predict {secs:.1f} s")
    # The repo's logistic head (probes.heads today; it moves with the head redesign, update this import then).
    from probes.heads import LogisticHead

    t0 = time.perf_counter()
    lr = LogisticHead(device="cpu").fit(xt, yt, X_val=xv, y_val=yv)
    print(f"LogisticHead (C, shrink chosen on val): {100 * float((lr.predict(xv) == yv).mean()):.1f}% "
          f"in {time.perf_counter() - t0:.1f} s")


def knn_million(args: argparse.Namespace) -> None:
    """Blocked top-k at 1M train rows: time and peak memory of fit + 2,000 queries (k, T fixed)."""
    import resource

    rng = np.random.default_rng(0)
    n, d, c = args.rows, 256, 1000
    mu = rng.standard_normal((c, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):  # drawn in slices: no float64 [n, d] temporary
        x[s:s + 100_000] = mu[y[s:s + 100_000]] + 2 * rng.standard_normal((min(100_000, n - s), d), dtype=np.float32)
    yq = rng.integers(0, c, 2000)
    q = mu[yq] + 2 * rng.standard_normal((2000, d), dtype=np.float32)
    t0 = time.perf_counter()
    head = KNNHead(k=20, temperature=0.07).fit(x, y)
    acc = float(head.score(q, yq))
    print(f"\n### k-NN at {n:,} x {d} train rows, 2,000 queries: {time.perf_counter() - t0:.1f} s, top-1 {100 * acc:.1f}%, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")


def _report(name: str, res: FewShotResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    res.write_json(out / f"{name}.json")
    plot_fewshot(res, out / f"{name}.png", title=f"few-shot accuracy on val ({name})")
    print(f"\n### {name}: {res.meta['classes']} classes, dim {res.meta['dim']}, {res.meta['seeds']} seeds, "
          f"val {res.meta['n_val']} images (top-1 %, mean ± 95% t-interval)\n")
    print(table(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shots", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4, 8, 16])
    ap.add_argument("--parts", default="synthetic,digits,knn")
    ap.add_argument("--probe-maker", type=Path, default=REPO / "bench" / "make_probe_features.py",
                    help="the 20k x 1408 feature recipe shipped in bench/ (knn part)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="train rows of the knn1m part")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "fewshot")
    args = ap.parse_args()
    for part in args.parts.split(","):
        {"synthetic": synthetic, "digits": digits, "knn": knn_large, "knn1m": knn_million}[part](args)


if __name__ == "__main__":
    main()
