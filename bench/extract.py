"""featstore extract vs the plain PyTorch loop, on the same sketch images, in the same run.

    python bench/extract.py [--quick] [--n 2000] [--repeats 3] [--mem-n 20000] [--sweep]

Images: N classifysketch-like 1111x1111 grayscale JPEGs (black strokes on white), generated once
by bench/make_sketches.py and cached under bench/out/ (MVA layout, train_images/<class>/).

What is compared (each measurement in a fresh subprocess, variants interleaved, median of --repeats):

(a) decode + preprocess on one core (one process, torch at 1 thread), images per CPU-second:
    the plain pipeline (Image.open, convert("RGB"), timm's eval transform for ViT-Tiny: bicubic
    resize 248, center crop 224, ToTensor, Normalize) against featstore's worker path
    (featstore.loader.ImageWork: read, sha1, decode as "L", Preprocess.to_uint8) plus the batched
    Preprocess.normalize, and the largest difference between the two normalised tensors.
(b) end to end, timm vit_tiny_patch16_224 with random weights, fp32 on CPU, batch 64: the whole
    `featstore extract` command (fresh cache folder each run) against the loop users write
    (torchvision ImageFolder + timm eval transform + DataLoader + forward under torch.no_grad +
    torch.save), serial and with 2 workers. Wall time of the whole command, start-up included,
    and the rate of the extraction loop alone.
(c) peak memory of `featstore extract --model pixels` at 2,000 and --mem-n images, and of (b):
    the largest process's peak RSS (wait4) and the sampled peak RSS summed over the process tree.

Prints a markdown table and writes bench/out/extract.json. --quick: 400 images, one repeat,
memory at 400 vs 2,000. --sweep adds featstore runs with --workers 0, 1 and 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from make_sketches import make_sketches  # noqa: E402

TIMM_MODEL = "vit_tiny_patch16_224"
ENCODER = f"timm:{TIMM_MODEL}"
BATCH = 64


# ----------------------------------------------------------------------------- data

def sketches(n: int) -> Path:
    """The cached folder of n sketches (generated on first use)."""
    return make_sketches(OUT / f"sketches_{n}", n)


def image_files(root: Path) -> list[Path]:
    return sorted((root / "train_images").glob("*/*.jpg"))


# ----------------------------------------------------------------------------- (a) decode + preprocess

def plain_transform():
    """timm's eval transform for ViT-Tiny, as a user builds it."""
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

    with torch.device("meta"):
        model = timm.create_model(TIMM_MODEL, pretrained=False)
    return create_transform(**resolve_data_config({}, model=model))


def featstore_preprocess():
    """featstore's Preprocess for ViT-Tiny, built the way `featstore extract` builds it."""
    from featstore.encoders import get_spec
    from featstore.encoders.preprocess import Preprocess
    from featstore.encoders.registry import backend_for

    spec = get_spec(ENCODER)
    return Preprocess.from_transform(backend_for(spec).transform(spec), channels=spec.channels)


def plain_path():
    """The plain pipeline, set up: a function from files to normalised float batches."""
    import torch
    from PIL import Image

    tf = plain_transform()

    def batches(files: list[Path]):
        for i in range(0, len(files), BATCH):
            yield torch.stack([tf(Image.open(p).convert("RGB")) for p in files[i:i + BATCH]])

    return batches


def featstore_path():
    """featstore's path, set up: worker __getitem__ per image (one thread), collate, batched normalisation."""
    from featstore.datasets import ImageItem
    from featstore.loader import ImageWork, collate

    pre = featstore_preprocess()

    def batches(files: list[Path]):
        work = ImageWork([ImageItem(p.name, p, 0) for p in files], pre, threads=1)
        for i in range(0, len(files), BATCH):
            batch = collate([work[k] for k in range(i, min(i + BATCH, len(files)))])
            yield pre.normalize(batch.pixels)

    return batches


DECODE_PATHS = {"plain": plain_path, "featstore": featstore_path}


def decode_child(path: str, data: Path) -> dict:
    """In a fresh process, one thread: time one decode path over every image."""
    import torch

    torch.set_num_threads(1)
    files = image_files(data)
    batches = DECODE_PATHS[path]()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n = sum(len(b) for b in batches(files))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"images": n, "cpu_s": cpu, "wall_s": wall, "per_cpu_s": n / cpu, "per_wall_s": n / wall}


def decode_difference(data: Path, limit: int) -> dict:
    """Largest |featstore - plain| over the first `limit` images, in normalised units and grey levels."""
    import torch

    files = image_files(data)[:limit]
    worst = 0.0
    differing = 0
    for a, b in zip(plain_path()(files), featstore_path()(files)):
        d = (a - b).abs()
        worst = max(worst, float(d.max()))
        differing += int((d > 0).any(dim=(1, 2, 3)).sum())
    std = min(featstore_preprocess().std)
    return {"images": len(files), "max_abs": worst, "grey_levels": worst * std * 255, "images_differing": differing,
            "torch": torch.__version__}


# ----------------------------------------------------------------------------- (b) end to end: the plain loop

def plain_loop_child(data: Path, workers: int, out: Path) -> dict:
    """The loop users write: ImageFolder + timm eval transform + DataLoader + fp32 forward + torch.save."""
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    torch.manual_seed(0)
    model = timm.create_model(TIMM_MODEL, pretrained=False, num_classes=0).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    loader = DataLoader(ImageFolder(str(data / "train_images"), transform=transform), batch_size=BATCH,
                        num_workers=workers)
    t0 = time.perf_counter()
    feats, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            feats.append(model(x))
            labels.append(y)
    torch.save({"features": torch.cat(feats), "labels": torch.cat(labels)}, out)
    seconds = time.perf_counter() - t0
    n = sum(len(y) for y in labels)
    return {"images": n, "loop_s": seconds, "loop_rate": n / seconds}


# ----------------------------------------------------------------------------- running and measuring subprocesses

@dataclass
class Run:
    """One subprocess: wall time of the whole command, peak memory, and what it reported."""

    name: str
    wall_s: float
    cpu_s: float  # user + system CPU seconds of the command and its (reaped) workers, from wait4
    max_rss_mib: float  # largest single process (the command or one of its workers), from wait4
    peak_tree_rss_mib: float  # RSS of all processes of the tree added up, sampled 5 times a second
    stdout: str = field(repr=False)
    info: dict = field(default_factory=dict)


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids = [int(k) for t in tasks for k in (t / "children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _rss_kib(pid: int) -> int:
    """Resident set size from /proc/PID/statm (cheap: smaps_rollup's PSS costs ~13 ms a read here)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def run_measured(name: str, cmd: list[str], env: dict | None = None) -> Run:
    """Run cmd to completion; raise with its output when it fails."""
    peak = [0]
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=BENCH.parent)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], sum(_rss_kib(p) for p in [proc.pid, *_children(proc.pid)]))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{' '.join(cmd)}\n{text[-3000:]}")
    return Run(name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, peak[0] / 1024, text)


def child_json(run: Run) -> dict:
    """The JSON line a `_child` subcommand printed last."""
    return json.loads(run.stdout.strip().splitlines()[-1])


def featstore_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "featstore"
    return [str(exe)] if exe.exists() else [shutil.which("featstore") or "featstore"]


def featstore_rate(stdout: str) -> dict:
    """images and images/s of the train split from the summary table `featstore extract` prints."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.replace("|", "│").split("│")]
        cells = [c for c in cells if c]
        if cells and cells[0] == "train" and len(cells) == 7:
            return {"images": int(cells[2].replace(",", "")), "loop_s": float(cells[5]),
                    "loop_rate": float(cells[6].replace(",", ""))}
    raise SystemExit(f"no train row in featstore's summary:\n{stdout[-2000:]}")


def run_featstore(name: str, data: Path, model: str, extra: list[str] = ()) -> Run:
    """One `featstore extract` into a fresh cache folder."""
    with tempfile.TemporaryDirectory(dir=OUT) as cache:
        cmd = [*featstore_cmd(), "extract", "--model", model, "--data", str(data), "--cache", cache,
               "--device", "cpu", "--batch-size", str(BATCH), *extra]
        run = run_measured(name, cmd, env={"COLUMNS": "200"})
    run.info = featstore_rate(run.stdout)
    return run


def run_child(name: str, *args: str) -> Run:
    run = run_measured(name, [sys.executable, str(Path(__file__).resolve()), "_child", *args])
    run.info = child_json(run)
    return run


# ----------------------------------------------------------------------------- the three measurements

def median(xs: list[float]) -> float:
    return statistics.median(xs)


def bench_decode(data: Path, repeats: int) -> dict:
    runs: dict[str, list[dict]] = {p: [] for p in DECODE_PATHS}
    for _ in range(repeats):
        for path in DECODE_PATHS:
            runs[path].append(run_child(f"decode {path}", "decode", path, str(data)).info)
    ratios = [f["per_cpu_s"] / p["per_cpu_s"] for f, p in zip(runs["featstore"], runs["plain"])]
    return {"runs": runs, "ratio_cpu": median(ratios), "ratios_cpu": ratios,
            **{f"{p}_per_cpu_s": median([r["per_cpu_s"] for r in rs]) for p, rs in runs.items()},
            **{f"{p}_per_wall_s": median([r["per_wall_s"] for r in rs]) for p, rs in runs.items()}}


def e2e_variants(data: Path, sweep: bool) -> dict:
    """name -> zero-argument function running that variant once."""
    out = Path(tempfile.gettempdir()) / f"bench_plain_{os.getpid()}.pt"
    variants = {
        "plain loop, serial": lambda: run_child("plain0", "plain", str(data), "0", str(out)),
        "plain loop, 2 workers": lambda: run_child("plain2", "plain", str(data), "2", str(out)),
        "featstore extract": lambda: run_featstore("featstore", data, ENCODER, ["--random-weights"]),
    }
    if sweep:
        for w in (0, 1, 2):
            variants[f"featstore extract -j {w}"] = (
                lambda w=w: run_featstore(f"featstore -j{w}", data, ENCODER, ["--random-weights", "--workers", str(w)]))
    return variants


def bench_e2e(data: Path, repeats: int, sweep: bool) -> dict:
    variants = e2e_variants(data, sweep)
    runs: dict[str, list[Run]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            runs[name].append(fn())
    base, two = runs["plain loop, serial"], runs["plain loop, 2 workers"]
    result = {}
    for name, rs in runs.items():
        n = rs[0].info["images"]
        result[name] = {
            "images": n,
            "wall_s": median([r.wall_s for r in rs]),
            "wall_rate": median([n / r.wall_s for r in rs]),
            "cpu_ms_per_image": median([1000 * r.cpu_s / n for r in rs]),
            "loop_rate": median([r.info["loop_rate"] for r in rs]),
            "vs_serial_wall": median([b.wall_s / r.wall_s for r, b in zip(rs, base)]),
            "vs_serial_loop": median([r.info["loop_rate"] / b.info["loop_rate"] for r, b in zip(rs, base)]),
            "vs_2workers_wall": median([b.wall_s / r.wall_s for r, b in zip(rs, two)]),
            "vs_2workers_loop": median([r.info["loop_rate"] / b.info["loop_rate"] for r, b in zip(rs, two)]),
            "max_rss_mib": max(r.max_rss_mib for r in rs),
            "peak_tree_rss_mib": max(r.peak_tree_rss_mib for r in rs),
            "runs": [asdict(r) | {"stdout": r.stdout[-400:]} for r in rs],
        }
    return result


def bench_memory(sizes: list[int], repeats: int) -> dict:
    result = {}
    for n in sizes:
        rs = [run_featstore(f"pixels {n}", sketches(n), "pixels") for _ in range(repeats)]
        result[n] = {"images": n, "wall_s": median([r.wall_s for r in rs]),
                     "loop_rate": median([r.info["loop_rate"] for r in rs]),
                     "max_rss_mib": max(r.max_rss_mib for r in rs), "peak_tree_rss_mib": max(r.peak_tree_rss_mib for r in rs)}
    return result


# ----------------------------------------------------------------------------- report

def md_decode(res: dict) -> list[str]:
    d, diff = res["decode"], res["difference"]
    return [
        f"Decode + preprocess, one core, {res['n']:,} sketch JPEGs 1111x1111 (median of {res['repeats']}; "
        "ratio: same-run median):",
        "",
        "| path | images / CPU-second | images / s (wall) | vs plain | max abs diff (normalised) |",
        "|---|---:|---:|---:|---:|",
        f"| plain: PIL open, convert RGB, timm eval transform | {d['plain_per_cpu_s']:.0f} | {d['plain_per_wall_s']:.0f} "
        f"| 1.00x | - |",
        f"| featstore: ImageWork (read, sha1, decode L, to_uint8) + batched normalize | {d['featstore_per_cpu_s']:.0f} "
        f"| {d['featstore_per_wall_s']:.0f} | {d['ratio_cpu']:.2f}x | {diff['max_abs']:.2g} "
        f"({diff['images_differing']}/{diff['images']} images differ) |",
    ]


def md_e2e(res: dict) -> list[str]:
    lines = [
        f"End to end, ViT-Tiny (random weights) fp32 on CPU, batch {BATCH}, {res['n']:,} images (median of "
        f"{res['repeats']}; ratios: same-run medians):",
        "",
        "| run | whole command, s | images / s (whole command) | images / s (loop) | vs serial (command) "
        "| vs serial (loop) | vs 2 workers (command) | CPU ms / image | peak RSS MiB (largest process) "
        "| peak RSS MiB (all processes, summed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["e2e"].items():
        w = res["default_workers"]
        label = name + (f" (default: {w} worker{'s' if w != 1 else ''})" if name == "featstore extract" else "")
        lines.append(f"| {label} | {r['wall_s']:.1f} | {r['wall_rate']:.1f} | {r['loop_rate']:.1f} "
                     f"| {r['vs_serial_wall']:.2f}x | {r['vs_serial_loop']:.2f}x | {r['vs_2workers_wall']:.2f}x "
                     f"| {r['cpu_ms_per_image']:.0f} | {r['max_rss_mib']:.0f} | {r['peak_tree_rss_mib']:.0f} |")
    return lines


def md_memory(res: dict) -> list[str]:
    lines = ["Peak memory of `featstore extract --model pixels`:", "",
             "| images | whole command, s | images / s (loop) | peak RSS MiB (largest process) "
             "| peak RSS MiB (all processes, summed) |", "|---:|---:|---:|---:|---:|"]
    for k, r in res["memory"].items():
        lines.append(f"| {int(k):,} | {r['wall_s']:.1f} | {r['loop_rate']:.0f} | {r['max_rss_mib']:.0f} "
                     f"| {r['peak_tree_rss_mib']:.0f} |")
    return lines


def markdown(res: dict) -> str:
    parts = [(md_decode, "decode"), (md_e2e, "e2e"), (md_memory, "memory")]
    return "\n\n".join("\n".join(fn(res)) for fn, key in parts if key in res)


def goals(res: dict) -> list[str]:
    out = []
    if "decode" in res:
        out.append(f"decode + preprocess >= 2x plain per core: {res['decode']['ratio_cpu']:.2f}x, "
                   f"max diff {res['difference']['max_abs']:.2g}")
    if "e2e" in res:
        fs = res["e2e"]["featstore extract"]
        out += [f"end to end >= 1.3x serial loop: {fs['vs_serial_wall']:.2f}x (whole command), "
                f"{fs['vs_serial_loop']:.2f}x (loop)",
                f"never slower than the 2-worker loop: {fs['vs_2workers_wall']:.2f}x (whole command), "
                f"{fs['vs_2workers_loop']:.2f}x (loop)"]
    if "memory" in res:
        small, large = res["memory"].values()
        out.append(f"memory flat: peak RSS {small['max_rss_mib']:.0f} MiB (largest process) / "
                   f"{small['peak_tree_rss_mib']:.0f} MiB (all) at {small['images']:,} images vs "
                   f"{large['max_rss_mib']:.0f} / {large['peak_tree_rss_mib']:.0f} MiB at {large['images']:,} "
                   f"({large['max_rss_mib'] / small['max_rss_mib']:.2f}x / "
                   f"{large['peak_tree_rss_mib'] / small['peak_tree_rss_mib']:.2f}x)")
    return out


# ----------------------------------------------------------------------------- entry points

def child_main(argv: list[str]) -> None:
    """`_child decode PATH DIR` or `_child plain DIR WORKERS OUT`: one measurement, one JSON line."""
    kind, *rest = argv
    if kind == "decode":
        info = decode_child(rest[0], Path(rest[1]))
    else:
        info = plain_loop_child(Path(rest[0]), int(rest[1]), Path(rest[2]))
    print(json.dumps(info))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="400 images, 1 repeat, memory at 400 vs 2,000")
    ap.add_argument("--n", type=int, help="images for (a) and (b) (default 2,000)")
    ap.add_argument("--repeats", type=int, help="runs per variant (default 3)")
    ap.add_argument("--mem-n", type=int, help="large size of the memory check (default 20,000)")
    ap.add_argument("--diff-n", type=int, default=2000, help="images compared for the pixel difference")
    ap.add_argument("--sweep", action="store_true", help="also run featstore with --workers 0, 1, 2")
    ap.add_argument("--parts", default="abc", help="which measurements to run: any of a, b, c (default abc)")
    args = ap.parse_args()
    n = args.n or (400 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    mem_sizes = [400 if args.quick else 2000, args.mem_n or (2000 if args.quick else 20000)]
    OUT.mkdir(parents=True, exist_ok=True)

    from featstore.loader import default_workers

    data = sketches(n)
    res = {"n": n, "repeats": repeats, "cpus": len(os.sched_getaffinity(0)), "default_workers": default_workers(False)}
    if "a" in args.parts:
        print(f"(a) decode + preprocess, {n} images ...", file=sys.stderr)
        res["decode"] = bench_decode(data, repeats)
        res["difference"] = decode_difference(data, args.diff_n)
    if "b" in args.parts:
        print("(b) end to end ...", file=sys.stderr)
        res["e2e"] = bench_e2e(data, repeats, args.sweep)
    if "c" in args.parts:
        print(f"(c) memory at {mem_sizes} images ...", file=sys.stderr)
        res["memory"] = bench_memory(mem_sizes, 1)
    res["markdown"], res["goals"] = markdown(res), goals(res)
    (OUT / "extract.json").write_text(json.dumps(res, indent=1, default=str))
    print(res["markdown"])
    print()
    print("\n".join("- " + g for g in res["goals"]))


if __name__ == "__main__":
    main()
