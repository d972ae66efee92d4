"""The extraction loop on a GPU: images/s and host stall per batch, prefetch and writer thread on vs off.

    python bench/gpu_check_loop.py [--model eva_giant_336] [--batch 64] [--n 2048] [--device cuda|cpu]

Runs featstore's own loop (`extract`: decode workers, upload, forward, rows, shards) over --n generated
JPEGs, random weights built on the device, once per variant: prefetch (side-stream upload + rows waited
for a batch later) off/on x writer thread off/on. Host stall per batch = the loop's ms per batch minus
the model-only ms per batch (a resident pinned batch through encode_batch, no loop): the time the GPU
waits for the host. --device cpu (tiny timm model, 64 images) checks the script itself; its numbers say
nothing about a GPU. Called by gpu_check.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import featstore.job  # noqa: E402
from featstore.encoders import create_encoder, get_spec  # noqa: E402
from featstore.extract import ExtractOptions, extract  # noqa: E402
from featstore.runtime import encode_batch, prepare_model, resolve_runtime  # noqa: E402

VARIANTS = [(False, False), (True, False), (False, True), (True, True)]  # (prefetch, write_thread)


def make_images(root: Path, n: int, size: int = 400) -> Path:
    """Noise JPEGs in 10 class folders: decode costs what a photo of that size costs."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "train" / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:07d}.jpg",
                                                                                    quality=90)
    return root


def _on_device(device: str):
    """create_encoder with the random init on the device: seconds instead of minutes for 1B parameters."""
    real = create_encoder

    def build(*a, **k):
        torch.manual_seed(0)
        with torch.device(device):
            return real(*a, **k)
    return build


def model_only(name: str, device: str, batch: int, iters: int) -> float:
    """images/s of the model alone: a resident (pinned) uint8 batch through encode_batch."""
    rt = resolve_runtime(device, "auto")
    model, pre = _on_device(device)(name, random_weights=True)
    model = prepare_model(model, rt)
    h, w = get_spec(name).input_size
    u8 = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8)
    u8 = u8.pin_memory() if rt.cuda else u8
    encode_batch(model, u8, pre, rt)  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        encode_batch(model, u8, pre, rt)
    return batch * iters / (time.perf_counter() - t0)


def loop(name: str, data: Path, cache: Path, *, device: str, batch: int, prefetch: bool,
         write_thread: bool) -> tuple[int, float, int]:
    """(images, seconds, batches) of the loop alone (Job._compute: no scan, commit, compaction)."""
    spent: list[float] = []
    compute = featstore.job.Job._compute

    def timed(self, *a, **k):
        t0 = time.perf_counter()
        compute(self, *a, **k)
        spent.append(time.perf_counter() - t0)

    featstore.job.Job._compute, featstore.job.create_encoder = timed, _on_device(device)
    try:
        rep = extract(model=name, data=data, cache=cache, random_weights=True,
                      options=ExtractOptions(device=device, batch_size=batch, prefetch=prefetch,
                                             write_thread=write_thread))
    finally:
        featstore.job.Job._compute, featstore.job.create_encoder = compute, create_encoder
    n = rep.splits[0].extracted
    return n, sum(spent), -(-n // batch)


def run(name: str, device: str, batch: int, n: int, iters: int) -> dict:
    base = model_only(name, device, batch, iters)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        data = make_images(Path(d) / "data", n)
        for k, (prefetch, write_thread) in enumerate(VARIANTS):
            images, seconds, batches = loop(name, data, Path(d) / f"cache{k}", device=device, batch=batch,
                                            prefetch=prefetch, write_thread=write_thread)
            per_batch = seconds / batches * 1e3
            rows.append({"prefetch": prefetch, "write_thread": write_thread, "images": images,
                         "images_per_s": images / seconds, "ms_per_batch": per_batch,
                         "host_stall_ms_per_batch": per_batch - batch / base * 1e3})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return {"model": name, "device": device, "batch": batch, "model_only_images_per_s": base, "loop": rows}


def render(res: dict) -> None:
    print(f"\n## extraction loop: {res['model']} on {res['device']}, batch {res['batch']} "
          f"(model alone: {res['model_only_images_per_s']:.1f} images/s)\n")
    print("| prefetch | writer thread | images/s | ms/batch | host stall ms/batch |\n|---|---|---:|---:|---:|")
    for r in res["loop"]:
        print(f"| {'on' if r['prefetch'] else 'off'} | {'on' if r['write_thread'] else 'off'} "
              f"| {r['images_per_s']:.1f} | {r['ms_per_batch']:.1f} | {r['host_stall_ms_per_batch']:.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: eva_giant_336 on cuda, a tiny timm ViT on cpu")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch", type=int, default=None, help="default: 64 on cuda, 8 on cpu")
    ap.add_argument("--n", type=int, default=None, help="images (default: 2048 on cuda, 64 on cpu)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check_loop: no CUDA device visible to torch; run it on a GPU machine (or --device cpu).",
              file=sys.stderr)
        return 2
    cpu = a.device == "cpu"
    res = run(a.model or ("timm:vit_tiny_patch16_224" if cpu else "eva_giant_336"), a.device,
              a.batch or (8 if cpu else 64), a.n or (64 if cpu else 2048), 2 if cpu else 10)
    render(res)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu_check_loop.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
