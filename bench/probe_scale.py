"""Head fit time vs rows, in memory vs streaming from fp16 shards; peak RSS of each fit.

    python bench/probe_scale.py            # logistic: 50k, 200k, 1M rows of dim 768, 100 classes
    python bench/probe_scale.py --quick    # 50k, 200k
    python bench/probe_scale.py --head mlp --sizes 200000 --mlp-epochs 5
    python bench/probe_scale.py --sweep --sizes 200000     # the 16-point logistic grid of --sweep
    python bench/probe_scale.py --sizes 50000,1000000 --skip-memory-above 300000

Synthetic features shaped like frozen-encoder embeddings (``EmbeddingLike``: ~79% val top-1 at 50k
rows, not separable), written as a feature set (fp16 shards of 4096 rows) in a temporary store; for
the MLP the train rows are stored in class order, as featstore stores a class-folder dataset. Each fit
runs in its own subprocess and reports VmHWM (peak RSS) from /proc/self/status at its end. Rows/s
counts train rows over the whole fit (load + fit in memory; every pass over the shards when
streaming). Writes bench/out/probe_scale[_mlp][_sweep].json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class EmbeddingLike:
    """Embedding-shaped features, the recipe of ../shared/bench/make_probe_features.py (power-law
    rotated noise spectrum, class signal in the top directions, superclasses of confusable classes,
    sub-modes, multivariate-t tails, a common offset, norm jitter, 2% label noise), drawn chunk by
    chunk so 1M rows never sit in memory: chunk ``i`` of stream ``s`` depends only on (seed, s, i)."""
    def __init__(self, *, dim, classes, noise, seed=0, supers=10, modes=3, label_noise=0.02,
                 a_noise=0.9, a_sig=1.5, t_dof=8.0):
        rng = np.random.default_rng(seed)
        self.q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.q = self.q.astype(np.float32)
        i = np.arange(dim) + 1.0
        self.lam_n = (i ** -a_noise / np.mean(i ** -a_noise)).astype(np.float32)
        self.lam_s = (i ** -a_sig / np.mean(i ** -a_sig)).astype(np.float32)
        sup = self._draw(rng, supers, self.lam_s, 1.0)
        mu = np.repeat(sup, classes // supers, axis=0) + self._draw(rng, classes, self.lam_s, 0.8)
        self.modes = mu[:, None, :] + self._draw(rng, classes * modes, self.lam_s, 0.5).reshape(classes, modes, dim)
        self.offset = self._draw(rng, 1, self.lam_n, 3.0)[0]
        self.classes, self.noise, self.seed, self.label_noise, self.t_dof = classes, noise, seed, label_noise, t_dof

    def _draw(self, rng, n, spec, scale):
        return (rng.standard_normal((n, len(spec)), dtype=np.float32) * (np.sqrt(spec) * scale)) @ self.q.T

    def chunk(self, stream, index, n, classes=None):
        """n rows; ``classes`` fixes the true class of each row (a store in class order), else drawn."""
        rng = np.random.default_rng([self.seed, stream, index])
        y = rng.integers(0, self.classes, n) if classes is None else np.array(classes)
        m = rng.integers(0, self.modes.shape[1], n)
        r = np.sqrt(self.t_dof / rng.chisquare(self.t_dof, size=(n, 1))).astype(np.float32)
        x = self.modes[y, m] + r * self._draw(rng, n, self.lam_n, self.noise) + self.offset
        x *= rng.uniform(0.8, 1.25, size=(n, 1)).astype(np.float32)
        flip = rng.random(n) < self.label_noise
        y[flip] = rng.integers(0, self.classes, int(flip.sum()))
        return x, y


def make_store(folder: Path, *, rows: int, val: int, dim: int, classes: int, noise: float, seed: int = 0,
               class_order: bool = False) -> Path:
    """The feature set; ``class_order`` writes train rows sorted by class, as featstore stores a class-folder
    dataset (what a minibatch head must shuffle across shards), else in random class order."""
    from featstore.store import FeatureSetWriter, SplitIndex, feature_key, now_iso

    gen = EmbeddingLike(dim=dim, classes=classes, noise=noise, seed=seed)
    name = f"synth{rows}"
    fields = {"bench": "probe_scale", "rows": rows, "dim": dim, "classes": classes, "noise": noise, "seed": seed,
              "class_order": class_order}
    key = feature_key(fields)
    out = folder / name / key
    header = {"encoder": name, "dim": dim, "views": 1, "dtype": "float16", "classes": [str(c) for c in range(classes)],
              "random_weights": False, "weights_source": "synthetic",
              "dataset": {"root": "", "name": name, "layout": "imported", "test_order": None}}
    with FeatureSetWriter(out, key=key, key_fields=fields, header=header) as w:
        for stream, (split, n) in enumerate((("train", rows), ("val", val))):
            ids = np.array([f"{split}/{i:08d}" for i in range(n)], dtype=object)
            sha1 = np.array([f"{i:040x}" for i in range(n)], dtype=object)
            labels = np.empty(n, dtype=np.int64)
            order = np.sort(np.random.default_rng([seed, 99]).integers(0, classes, n)) \
                if class_order and split == "train" else None
            for c, lo in enumerate(range(0, n, w.shard_rows)):
                hi = min(lo + w.shard_rows, n)
                x, labels[lo:hi] = gen.chunk(stream, c, hi - lo, None if order is None else order[lo:hi])
                w.add(split, list(ids[lo:hi]), list(labels[lo:hi]), list(sha1[lo:hi]), x.astype(np.float16))
            zeros = np.zeros(n, dtype=np.int64)
            w.commit_split(split, SplitIndex(ids=ids, sha1=sha1, labels=labels, size=zeros, mtime_ns=zeros), [])
        w.record_run({"started": now_iso(), "finished": now_iso(), "device": "bench"})
    return out


def worker(mode: str, folder: str, head_kind: str, mlp_epochs: int, sweep_grid: bool) -> dict:
    import torch

    from featstore.store import FeatureSet
    from probes.heads import create_head, get_head
    from probes.sources.blocks import feature_set_blocks
    from probes.sources.memory import ArraySource
    from probes.sources.store import BlockSource

    params = {"epochs": mlp_epochs, "device": "cpu"} if head_kind == "mlp" else {"device": "cpu"}
    torch.manual_seed(0)
    fs = FeatureSet.open(Path(folder))
    val = fs.load("val")
    t0 = time.perf_counter()
    if mode == "memory":
        train = fs.load("train")
        extra = {"load_s": time.perf_counter() - t0}
        source = ArraySource(train.features, train.labels)
    else:
        source = BlockSource(feature_set_blocks(fs), fs.dim)
        extra = {}
    if sweep_grid:  # the default grid of `probes fit --sweep`
        from probes.sweep import sweep

        head = sweep(head_kind, get_head(head_kind).grid, source, None, val.features, val.labels,
                     base_params=params).best_head
    else:
        head = create_head(head_kind, **params).fit(source, X_val=val.features, y_val=val.labels)
    if mode != "memory":
        extra["passes"] = head.n_passes_
    extra.update({"n_iter": head.n_iter_} if head_kind == "logistic" else
                 {"epochs_run": head.epochs_run_, "best_epoch": head.best_epoch_})
    seconds = time.perf_counter() - t0
    return {"mode": mode, "rows": fs.count("train"), "seconds": seconds, "rows_per_s": fs.count("train") / seconds,
            "val_top1": head.score(val.features, val.labels), "peak_rss_mb": _peak_rss_mb(), **extra}


def run_worker(mode: str, folder: Path, timeout: float, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--store", str(folder), "--head", args.head,
           "--mlp-epochs", str(args.mlp_epochs)] + (["--sweep"] if args.sweep else [])
    try:
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "skipped": f"over the {timeout:.0f} s timeout"}
    if p.returncode != 0:
        return {"mode": mode, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50000,200000,1000000")
    ap.add_argument("--quick", action="store_true", help="50k and 200k rows")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--noise", type=float, default=3.0,
                    help="noise scale of the synthetic features (3.0: ~79%% val top-1 at 50k rows)")
    ap.add_argument("--val", type=int, default=5000)
    ap.add_argument("--skip-memory-above", type=int, default=None,
                    help="skip the in-memory fit above this many rows (default: when 3x the fp32 train "
                         "would not fit in half the machine's memory)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per fit, seconds")
    ap.add_argument("--head", choices=("logistic", "mlp"), default="logistic",
                    help="mlp: MLPHead defaults with --mlp-epochs, train rows stored in class order")
    ap.add_argument("--mlp-epochs", type=int, default=5)
    ap.add_argument("--sweep", action="store_true", help="fit the 16-configuration default grid (probes fit --sweep)")
    ap.add_argument("--out", default=None, help="default: bench/out/probe_scale[_mlp][_sweep].json")
    ap.add_argument("--worker", choices=("memory", "stream"), help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.store, args.head, args.mlp_epochs, args.sweep)))
        return
    sizes = [50000, 200000] if args.quick else [int(s) for s in args.sizes.split(",")]
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="probe_scale_") as tmp:
        for n in sizes:
            t = time.perf_counter()
            folder = make_store(Path(tmp), rows=n, val=args.val, dim=args.dim, classes=args.classes,
                                noise=args.noise, class_order=args.head == "mlp")
            print(f"# {n} rows written in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
            too_big = (args.skip_memory_above is not None and n > args.skip_memory_above) or \
                3 * n * args.dim * 4 > mem_total / 2
            mem = {"mode": "memory", "skipped": "over the memory/time limit"} if too_big else \
                run_worker("memory", folder, args.timeout, args)
            print(f"# memory {mem}", file=sys.stderr, flush=True)
            stream = run_worker("stream", folder, args.timeout, args)
            print(f"# stream {stream}", file=sys.stderr, flush=True)
            rows_out.append({"rows": n, "memory": mem, "stream": stream})
            for p in Path(tmp).iterdir():  # free the disk before the next size
                subprocess.run(["rm", "-rf", str(p)], check=False)
    report = {"head": args.head, "sweep": args.sweep, "mlp_epochs": args.mlp_epochs if args.head == "mlp" else None, "dim": args.dim, "classes": args.classes, "noise": args.noise, "val": args.val, "cpus": os.cpu_count(), "results": rows_out}
    out = Path(args.out or ROOT / "bench" / "out" / f"probe_scale{'_mlp' if args.head == 'mlp' else ''}{'_sweep' if args.sweep else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(rows_out))


def table(results: list[dict]) -> str:
    def cell(r: dict, key: str, fmt: str) -> str:
        return fmt.format(r[key]) if key in r else r.get("skipped", str(r.get("error", "-")))
    lines = [("| rows | in-memory s | in-memory rows/s | in-memory top-1 | in-memory peak RSS MB "
              "| streaming s | streaming rows/s | streaming top-1 | streaming passes | streaming peak RSS MB "
              "| stream/memory rows/s |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        m, s = res["memory"], res["stream"]
        ratio = f"{s['rows_per_s'] / m['rows_per_s']:.2f}" if "rows_per_s" in m and "rows_per_s" in s else "-"
        lines.append(f"| {res['rows']} | {cell(m, 'seconds', '{:.1f}')} | {cell(m, 'rows_per_s', '{:.0f}')} "
                     f"| {cell(m, 'val_top1', '{:.4f}')} | {cell(m, 'peak_rss_mb', '{:.0f}')} "
                     f"| {cell(s, 'seconds', '{:.1f}')} | {cell(s, 'rows_per_s', '{:.0f}')} "
                     f"| {cell(s, 'val_top1', '{:.4f}')} | {cell(s, 'passes', '{}')} "
                     f"| {cell(s, 'peak_rss_mb', '{:.0f}')} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
