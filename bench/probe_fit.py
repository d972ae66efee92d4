"""Benchmark: heads vs scikit-learn on EVA-CLIP-shaped features, each run a fresh process.

Usage: python bench/probe_fit.py [--quick] [--repeats N] [--runs cli_logistic,...] [--no-extras] [--no-calibration]

Features come from bench/make_probe_features.py (20,000 train / 2,500 val, dim 1408,
500 classes; --quick: 100 classes, 4,000 / 500) and are cached in bench/out/. Besides the heads
alone, the whole `probes fit` command is timed on the same features imported into a store (the
first fit, which computes the duplicate audit, then later fits, which read it from the set's audit
cache; and with the solver forced to fp32, the path of a CPU without fast bf16), and a calibration
run reports ECE before / after the temperature and the logistic + MLP ensemble, on these features
and on the digits demo. The digits demo's whole `probes fit` is timed against the bare interpreter
with `import probes.cli` and with the imports the fit needs (torch, scikit-learn, the solver).
Every measured run is a separate Python process timed from the outside (imports, loading,
fit and predict included), all in the same invocation so the ratios compare like with like.
The fraction of matmul peak is the solver's matmul FLOPs (counted by the torch profiler in
an extra, untimed run) over its fit time, against torch.mm measured here at the solver's
shapes. Prints a markdown table and writes bench/out/probe_fit.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
MAKER = REPO / "bench" / "make_probe_features.py"
SIZES = {"full": {}, "quick": {"C": 100, "n_tr": 4000, "n_va": 500}}
RUNS = ("sklearn", "logistic", "logistic_sweep16", "mlp", "cli_logistic_first", "cli_logistic", "cli_logistic_fp32",
        "cli_mlp")
DIGITS_RUNS = ("import_cli", "import_fit", "cli_logistic")


# ----------------------------------------------------------------------------- data


def features(quick: bool) -> Path:
    """The cached npz (generated once with the shared maker's ``make``)."""
    path = OUT / f"probe_features{'_quick' if quick else ''}.npz"
    if path.exists():
        return path
    spec = importlib.util.spec_from_file_location("make_probe_features", MAKER)
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    (xt, yt), (xv, yv) = maker.make(**SIZES["quick" if quick else "full"])
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, X=xt, y=yt, X_val=xv, y_val=yv)
    tmp.rename(path)
    return path


# ----------------------------------------------------------------------------- children


def child(name: str, data: Path) -> dict:
    """One measured run; returns what the parent prints (val top-1 and run details)."""
    t0 = time.perf_counter()
    arrays = np.load(data)
    X, y, Xv, yv = arrays["X"], arrays["y"], arrays["X_val"], arrays["y_val"]
    t1 = time.perf_counter()
    info = RUNNERS[name](X, y, Xv, yv)
    info.update(load_s=t1 - t0, fit_predict_s=time.perf_counter() - t1)
    return info


def run_sklearn(X, y, Xv, yv) -> dict:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X, y)
    return {"val_top1": float((model.predict(Xv) == yv).mean()), "n_iter": int(model.n_iter_[0])}


def run_logistic(X, y, Xv, yv) -> dict:
    sys.path.insert(0, str(REPO))
    from probes.heads import LogisticHead

    t0 = time.perf_counter()
    head = LogisticHead().fit(X, y, X_val=Xv, y_val=yv)
    return {"val_top1": float((head.predict(Xv) == yv).mean()), "C": head.C_,
            "shrink": head.shrink_, "points": len(head.selection_), "n_iter": head.n_iter_,
            "fit_s": time.perf_counter() - t0}


def run_logistic_flops(X, y, Xv, yv) -> dict:
    """Untimed: matmul FLOPs of the same fit, from the torch profiler."""
    sys.path.insert(0, str(REPO))
    import torch
    from torch.profiler import profile

    from probes.heads import LogisticHead

    with profile(with_flops=True) as prof:
        LogisticHead().fit(X, y, X_val=Xv, y_val=yv)
    flops = sum(e.flops for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm"))
    return {"matmul_gflop": flops / 1e9, "val_top1": float("nan"), "torch": torch.__version__}


def run_sweep16(X, y, Xv, yv) -> dict:
    sys.path.insert(0, str(REPO))
    from probes.sweep import sweep

    k, n = len(np.unique(y)), len(y)
    grid = {"C": [k / (lam_k * n) for lam_k in (10, 3.16, 1, 0.316)],
            "shrink": [0.316, 1.0, 3.16, 10.0]}
    res = sweep("logistic", grid, X, y, Xv, yv)
    return {"val_top1": float((res.best_head.predict(Xv) == yv).mean()),
            "configs": len(res.table), "best": res.best_params}


def run_mlp(X, y, Xv, yv) -> dict:
    sys.path.insert(0, str(REPO))
    from probes.heads import MLPHead

    head = MLPHead().fit(X, y, X_val=Xv, y_val=yv)
    return {"val_top1": float((head.predict(Xv) == yv).mean()), "best_epoch": head.best_epoch_,
            "epochs_run": head.epochs_run_}


def run_calibration(X, y, Xv, yv) -> dict:
    """ECE before/after the temperature `probes fit` chooses on val (Brier-optimal, kept if it lowers the ECE),
    the NLL-optimal one for comparison, the same fitted on one half of val and measured on the other (no
    reuse), and the ensemble of the two calibrated heads (weights chosen on val) against its members."""
    sys.path.insert(0, str(REPO))
    from probes.calibration import apply_temperature, choose_temperature, fit_temperature
    from probes.ensemble import choose_weights
    from probes.heads import LogisticHead, MLPHead
    from probes.metrics import expected_calibration_error as ece

    out, calibrated = {}, {}
    half = np.arange(len(yv)) % 2 == 0
    for name, head in (("logistic", LogisticHead()), ("mlp", MLPHead())):
        logp = head.fit(X, y, X_val=Xv, y_val=yv).predict_log_proba(Xv)
        T, T_nll = choose_temperature(logp, yv), fit_temperature(logp, yv)
        calibrated[name] = apply_temperature(logp, T)
        held = [ece(apply_temperature(logp[b], choose_temperature(logp[a], yv[a])), yv[b])
                for a, b in ((half, ~half), (~half, half))]
        out[name] = {"top1": float((logp.argmax(1) == yv).mean()), "T": T, "ece_before": ece(np.exp(logp), yv),
                     "ece_after": ece(calibrated[name], yv), "T_nll": T_nll,
                     "ece_after_nll_T": ece(apply_temperature(logp, T_nll), yv),
                     "ece_after_heldout_half": float(np.mean(held)),
                     "mean_max_prob_before": float(np.exp(logp).max(1).mean())}
    mean = (calibrated["logistic"] + calibrated["mlp"]) / 2
    w = choose_weights([calibrated["logistic"], calibrated["mlp"]], yv)
    mix = w[0] * calibrated["logistic"] + w[1] * calibrated["mlp"]
    out["ensemble"] = {"top1": float((mix.argmax(1) == yv).mean()), "ece": ece(mix, yv), "weights": w.tolist(),
                       "plain_mean_top1": float((mean.argmax(1) == yv).mean()), "plain_mean_ece": ece(mean, yv),
                       "best_member_top1": max(out["logistic"]["top1"], out["mlp"]["top1"])}
    out["val_top1"] = out["ensemble"]["top1"]
    return out


def run_cli(head: str, store: Path, *, name: str = "bench", params: tuple[str, ...] = ()) -> dict:
    """The command users run: `probes fit` in a fresh interpreter (imports, loading, fit, calibration,
    predictions and the run folder included)."""
    with __import__("tempfile").TemporaryDirectory() as runs:
        extra = [a for p in params for a in ("-p", p)]
        proc = subprocess.run([sys.executable, "-c", "from probes.cli import probes_app; probes_app()", "fit", "-f", name,
                               "--head", head, "--cache", str(store), "--runs", runs, *extra], capture_output=True, text=True,
                              cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
        if proc.returncode:
            raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
        run = next(Path(runs).iterdir())
        metrics = json.loads((run / "metrics.json").read_text())
        audit = next((ln for ln in proc.stderr.splitlines() if ln.startswith("audit:")), "")
    return {"val_top1": metrics["val_top1"], "ece_before": metrics["val_ece_uncalibrated"], "ece": metrics["val_ece"],
            "audit": audit[-40:]}


def clear_audit_cache(store: Path) -> None:
    """The first fit on a set computes the duplicate audit; later ones read it from the set's audit cache."""
    import shutil

    for folder in store.glob("*/*/audit-cache"):
        shutil.rmtree(folder)


def digits_store() -> Path:
    """The digits demo (`featstore demo-data`) extracted with the pixels encoder, once, in bench/out."""
    root = OUT / "digits"
    if (root / "cache").exists():
        return root / "cache"
    sys.path.insert(0, str(REPO))
    from featstore.demo import write_digits
    from featstore.extract import extract

    write_digits(root / "data")
    extract(model="pixels", data=root / "data", cache=root / "tmpcache")
    (root / "tmpcache").rename(root / "cache")
    return root / "cache"


def digits_npz() -> Path:
    """The digits demo's train and val features as the calibration child reads them."""
    path = OUT / "digits" / "features.npz"
    if not path.exists():
        sys.path.insert(0, str(REPO))
        from probes.data import load_features

        f = load_features(["pixels"], cache=digits_store(), splits=("train", "val"))
        np.savez(path, X=f.split("train").features, y=f.split("train").labels, X_val=f.split("val").features,
                 y_val=f.split("val").labels)
    return path


def timed_digits(name: str) -> dict:
    """The digits demo's whole `probes fit --head logistic` (audit cached, as on every fit after the first),
    and the bare interpreter with the imports, each a fresh process timed from outside."""
    store = digits_store()
    code = {"import_cli": "import probes.cli",
            "import_fit": "import probes.cli, probes.train, probes.heads.logistic, probes.calibration"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if name == "cli_logistic":
        info = run_cli("logistic", store, name="pixels")
    else:
        subprocess.run([sys.executable, "-c", code[name]], check=True, cwd=REPO,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
        info = {}
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {**info, "wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def imported_store(data: Path) -> Path:
    """The bench features imported once into a store (what `probes fit` reads)."""
    store = data.with_suffix(".store")
    if store.exists():
        return store
    sys.path.insert(0, str(REPO))
    from featstore.importer import import_arrays

    arrays = np.load(data)
    tmp = data.with_suffix(".tmpdir")
    tmp.mkdir(exist_ok=True)
    files = {}
    for split, (x, yy) in {"train": ("X", "y"), "val": ("X_val", "y_val")}.items():
        ids = np.array([f"{c}/{split}{i:06d}.png" for i, c in enumerate(arrays[yy])])
        np.savez(tmp / f"{split}.npz", features=arrays[x], labels=arrays[yy], ids=ids)
        files[split] = tmp / f"{split}.npz"
    import_arrays("bench", files, cache=store)
    return store


RUNNERS = {"sklearn": run_sklearn, "calibration": run_calibration, "logistic": run_logistic, "logistic_flops": run_logistic_flops,
           "logistic_sweep16": run_sweep16, "mlp": run_mlp}


# ----------------------------------------------------------------------------- parent


def timed(name: str, data: Path, *, child_name: str | None = None) -> dict:
    """Run one child process; wall time measured from outside, result read from stdout.

    CPU seconds (user + system) are recorded too: on a shared machine they move less than
    wall time when other jobs compete for the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if name.startswith("cli_"):
        store = imported_store(data)
        if name == "cli_logistic_first":
            clear_audit_cache(store)
        head = name[4:].split("_")[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        info = run_cli(head, store, params=("precision=fp32",) if name.endswith("_fp32") else ())
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {**info, "wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    proc = subprocess.run([sys.executable, __file__, "--child", child_name or name, "--data", str(data)],
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": cpu}


def matmul_gflops(n: int, d: int, k: int) -> dict[str, float]:
    """torch.mm GFLOP/s at the solver's shape ([n, d] x [d, K]), fp32 and bf16."""
    import torch

    out = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, d).to(dtype), torch.randn(d, k).to(dtype)
        a @ b
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        out[label] = 2 * n * d * k / statistics.median(times) / 1e9
    return out


def cpu_capability(n: int, d: int, k: int) -> dict:
    """Which matmul path the logistic head takes here, and whether the CPU has fast bf16."""
    sys.path.insert(0, str(REPO))
    import torch

    from probes.heads.device import fast_bf16, resolve_dtype

    cpu = torch.device("cpu")
    return {"fast_bf16": fast_bf16(cpu), "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
            "amx": bool(torch.cpu._is_amx_tile_supported()),
            "logistic_matmul_dtype": str(resolve_dtype("auto", cpu, n * (d + 1) * k)).replace("torch.", "")}


def measure(quick: bool, repeats: int, runs: tuple[str, ...] = RUNS, *, extras: bool = True,
            calibration: bool = True) -> dict:
    """``runs`` of the table, interleaved ``repeats`` times; with ``extras``, the matmul FLOPs, the two
    calibration runs (bench features, digits demo) and the digits demo's timings too."""
    data = features(quick)
    with np.load(data) as arrays:
        n, d = arrays["X"].shape
        k = len(np.unique(arrays["y"]))
    results = {name: [] for name in runs}
    digits = {name: [] for name in DIGITS_RUNS} if extras else {}
    for _ in range(repeats):  # interleaved, so that load on a shared machine hits all alike
        for name in runs:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name].append(timed(name, data))
        for name in digits:
            print(f"running digits {name} ...", file=sys.stderr, flush=True)
            digits[name].append(timed_digits(name))
    report = {"quick": quick, "cpu": cpu_capability(n, d, k), "shape": {"n": n, "d": d, "classes": k},
              "repeats": repeats, "runs": results, "digits": digits, "load_average": list(__import__("os").getloadavg())}
    if extras and calibration:
        report.update(calibration=timed("calibration", data),
                      calibration_digits=timed("calibration_digits", digits_npz(), child_name="calibration"))
    if extras:
        report.update(matmul_gflops=matmul_gflops(n, d + 1, k),
                      logistic_matmul_gflop=timed("logistic_flops", data)["matmul_gflop"])
    return report


def summarize(report: dict) -> dict:
    med = {name: statistics.median(r["wall_s"] for r in runs) for name, runs in report["runs"].items()}
    cpu = {name: statistics.median(r["cpu_s"] for r in runs) for name, runs in report["runs"].items()}
    out = {"wall_s": med, "cpu_s": cpu}
    if "sklearn" in med:
        out["speedup_vs_sklearn"] = {k: med["sklearn"] / v for k, v in med.items()}
        out["cpu_speedup_vs_sklearn"] = {k: cpu["sklearn"] / v for k, v in cpu.items()}
    if "logistic_sweep16" in med and "logistic" in med:
        out["sweep16_over_single"] = med["logistic_sweep16"] / med["logistic"]
    if report["digits"]:
        dw = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in report["digits"].items()}
        dc = {name: statistics.median(r["cpu_s"] for r in rs) for name, rs in report["digits"].items()}
        out["digits"] = {"wall_s": dw, "cpu_s": dc, "over_import_cli": dw["cli_logistic"] / dw["import_cli"],
                         "over_import_fit": dw["cli_logistic"] / dw["import_fit"]}
    if "logistic_matmul_gflop" in report and "logistic" in report["runs"]:
        fit = statistics.median(r["fit_s"] for r in report["runs"]["logistic"])
        achieved = report["logistic_matmul_gflop"] / fit
        out.update(logistic_fit_s=fit, logistic_gflop_per_s=achieved,
                   fraction_of_bf16_peak=achieved / report["matmul_gflops"]["bf16"],
                   fraction_of_fp32_peak=achieved / report["matmul_gflops"]["fp32"])
    return out


LABELS = {"sklearn": "scikit-learn `LogisticRegression()` default",
          "logistic": "`LogisticHead()` (C and shrink chosen on val)",
          "logistic_sweep16": "logistic sweep, 16 configs (4 C x 4 shrink) + the default search",
          "mlp": "`MLPHead()` default (early stopping on val)",
          "cli_logistic_first": "whole `probes fit --head logistic` on a set without a cached audit (imported from Python; `featstore import` and `extract` compute it)",
          "cli_logistic": "whole `probes fit --head logistic` command (audit read from the set's cache)",
          "cli_logistic_fp32": "the same with the solver in fp32 (`-p precision=fp32`: a CPU without fast bf16)",
          "cli_mlp": "whole `probes fit --head mlp` command"}


def markdown(report: dict, summary: dict) -> str:
    shape = report["shape"]
    load = ", ".join(f"{v:.1f}" for v in report["load_average"])
    lines = [f"Features: {shape['n']} train x {shape['d']} dims, {shape['classes']} classes; "
             f"median of {report['repeats']} run(s), each a fresh process; load average at the end {load}.", "",
             "| run | wall s (whole process) | CPU s | val top-1 | speed vs scikit-learn (wall / CPU) |",
             "|---|---:|---:|---:|---:|"]
    for name, runs in report["runs"].items():
        top1 = statistics.median(r["val_top1"] for r in runs)
        ratio = (f"{summary['speedup_vs_sklearn'][name]:.2f}x / {summary['cpu_speedup_vs_sklearn'][name]:.2f}x"
                 if "speedup_vs_sklearn" in summary else "")
        lines.append(f"| {LABELS[name]} | {summary['wall_s'][name]:.1f} | {summary['cpu_s'][name]:.1f} | {top1:.1%} | "
                     f"{ratio} |")
    cpu = report["cpu"]
    lines += ["", f"CPU: fast bf16 {cpu['fast_bf16']} (AVX512-BF16 {cpu['avx512_bf16']}, AMX {cpu['amx']}); "
              f"logistic solver matmuls ran in {cpu['logistic_matmul_dtype']} (fp32 in the `precision=fp32` row)."]
    if "digits" in summary:
        dg = summary["digits"]
        lines += ["", f"Digits demo, whole `probes fit --head logistic` (audit cached): {dg['wall_s']['cli_logistic']:.2f} s "
                  f"(CPU {dg['cpu_s']['cli_logistic']:.2f}); `python -c 'import probes.cli'` {dg['wall_s']['import_cli']:.2f} s; "
                  f"with the fit's imports (torch, scikit-learn, the solver) {dg['wall_s']['import_fit']:.2f} s "
                  f"(CPU {dg['cpu_s']['import_fit']:.2f}): {dg['over_import_fit']:.2f}x the latter, "
                  f"{dg['over_import_cli']:.1f}x the former."]
    for key, title in (("calibration", "bench features"), ("calibration_digits", "digits demo")):
        if key not in report:
            continue
        cal = report[key]
        lines += ["", f"Calibration, {title}:", "",
                  "| head | val top-1 | T (Brier) | ECE before | ECE after | ECE after, T from the other half | "
                  "T (NLL) | ECE after NLL T |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in ("logistic", "mlp"):
            c = cal[name]
            lines.append(f"| {name} | {c['top1']:.1%} | {c['T']:.3g} | {c['ece_before']:.3f} | {c['ece_after']:.3f} | "
                         f"{c['ece_after_heldout_half']:.3f} | {c['T_nll']:.3g} | {c['ece_after_nll_T']:.3f} |")
        ens = cal["ensemble"]
        lines.append(f"| ensemble, plain mean of calibrated probabilities | {ens['plain_mean_top1']:.1%} | | | "
                     f"{ens['plain_mean_ece']:.3f} | | | |")
        lines.append(f"| ensemble, weights chosen on val {ens['weights']} | {ens['top1']:.1%} | | | {ens['ece']:.3f} "
                     f"| | | |")
    if "logistic_fit_s" in summary:
        mm = report["matmul_gflops"]
        lines += ["", (f"16-config sweep / one fit: {summary['sweep16_over_single']:.2f}x. "
                       if "sweep16_over_single" in summary else "") +
                  f"LogisticHead fit+predict (imports excluded) {summary['logistic_fit_s']:.2f} s, "
                  f"{report['logistic_matmul_gflop']:.0f} GFLOP in matmuls = "
                  f"{summary['logistic_gflop_per_s']:.0f} GFLOP/s, "
                  f"{summary['fraction_of_bf16_peak']:.0%} of this machine's bf16 torch.mm "
                  f"({mm['bf16']:.0f} GFLOP/s; fp32 {mm['fp32']:.0f})."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 classes, 4,000 train images")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each kind (median)")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {', '.join(RUNS)}")
    ap.add_argument("--no-extras", action="store_true", help="skip the FLOP count, calibration and digits runs")
    ap.add_argument("--no-calibration", action="store_true", help="skip the two calibration runs (they fit the MLP)")
    ap.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data)))
        return
    unknown = set(args.runs.split(",")) - set(RUNS)
    if unknown:
        ap.error(f"unknown runs {sorted(unknown)}; known: {', '.join(RUNS)}")
    report = measure(args.quick, args.repeats, tuple(r for r in RUNS if r in args.runs.split(",")),
                     extras=not args.no_extras, calibration=not args.no_calibration)
    summary = summarize(report)
    OUT.mkdir(parents=True, exist_ok=True)
    name = "probe_fit_quick.json" if args.quick else "probe_fit.json"
    (OUT / name).write_text(json.dumps({**report, "summary": summary}, indent=2, default=str))
    print(markdown(report, summary))


if __name__ == "__main__":
    main()
