"""Issue-14 checks of the extraction path on a GPU (called by gpu_check.py; `--smoke` runs them on the CPU).

    python bench/gpu_check_extract.py [--model eva_giant_336] [--batches 64,128,256,512] [--smoke]

(1) fp16 vs IEEE fp32 on the same pixels (random weights): min cosine, rel. max error, non-finite rows.
(2) Host stall per batch: selecting rows with a Python list + mean/std rebuilt per batch (before) vs
    the pinned batch passed through + cached mean/std (after); ms of host work and images/s of the loop.
(3) Peak GPU memory at each batch size.
(4) Out-of-memory back-off: with the process capped to a fraction of the GPU, featstore's own chunking
    halves the batch until it fits and reports the size.
Without CUDA (and without --smoke) it says so and exits with status 2. --smoke: a tiny timm model on the
CPU, to check the script itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featstore.encoders import create_encoder, get_spec  # noqa: E402
from featstore.encoders.preprocess import _stats  # noqa: E402
from featstore.forward import BatchEncoder, select_rows as _rows  # noqa: E402
from featstore.runtime import Runtime, encode_batch, prepare_model, resolve_runtime  # noqa: E402


def _sync(rt: Runtime) -> None:
    if rt.cuda:
        torch.cuda.synchronize()


def _batch(spec, n: int, cuda: bool) -> torch.Tensor:
    h, w = spec.input_size
    u8 = torch.randint(0, 256, (n, spec.channels, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return u8.pin_memory() if cuda else u8


def _model(name: str, rt: Runtime):
    torch.manual_seed(0)
    with torch.device(rt.device):  # random init on the device: seconds instead of minutes for 1B parameters
        model, pre = create_encoder(name, random_weights=True)
    return prepare_model(model, rt), pre


def _single(y):
    return next(iter(y.values())) if isinstance(y, dict) else y


def fp16_vs_fp32(name: str, device: str, n: int = 16) -> dict:
    spec = get_spec(name)
    low = "fp16" if device == "cuda" else "bf16"
    got = {}
    for precision in ("fp32", low):
        rt = resolve_runtime(device, precision)
        model, pre = _model(name, rt)
        got[precision] = _single(encode_batch(model, _batch(spec, n, rt.cuda), pre, rt))
        del model
    a, b = got["fp32"], got[low]
    finite = torch.isfinite(b).all(dim=1)
    cos = torch.nn.functional.cosine_similarity(a[finite], b[finite], dim=1).min().item() if finite.any() else float("nan")
    return {"model": name, "low": low, "min_cosine": cos, "rel_max_err": ((a - b).abs().max() / a.abs().max()).item(),
            "non_finite_rows": int((~finite).sum())}


def host_stall(name: str, device: str, batches: list[int], iters: int) -> list[dict]:
    spec = get_spec(name)
    rt = resolve_runtime(device, "fp16" if device == "cuda" else "fp32")
    model, pre = _model(name, rt)
    rows = []
    for n in batches:
        x = _batch(spec, n, rt.cuda)
        keep = list(range(n))
        for label, select, uncached in (("before", lambda: x[keep], True), ("after", lambda: _rows(x, keep), False)):
            encode_batch(model, x, pre, rt)  # warm-up
            _sync(rt)
            if rt.cuda:
                torch.cuda.reset_peak_memory_stats()
            host = 0.0
            t0 = time.perf_counter()
            for _ in range(iters):
                h0 = time.perf_counter()
                if uncached:
                    _stats.cache_clear()  # what every batch paid before: mean/std built and uploaded again
                sel = select()
                host += time.perf_counter() - h0
                encode_batch(model, sel, pre, rt)
            _sync(rt)
            wall = time.perf_counter() - t0
            rows.append({"batch": n, "code": label, "host_ms_per_batch": host / iters * 1e3,
                         "images_per_s": n * iters / wall,
                         "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if rt.cuda else float("nan")})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def oom_backoff(name: str, batch: int, fraction: float) -> dict:
    """featstore's chunking under a memory cap: the batch is halved until it fits."""
    rt = resolve_runtime("cuda", "fp16")
    spec = get_spec(name)
    model, pre = _model(name, rt)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction)
    try:
        enc = BatchEncoder(model, pre, rt, batch_size=batch, outputs=(spec.default_output,), views=("orig",))
        t0 = time.perf_counter()
        feats, _ = enc.finish(enc.launch(_batch(spec, batch, True)))
        rows = len(next(iter(feats.values())))
        return {"asked": batch, "fitted": enc.fitted or batch, "rows": rows, "seconds": time.perf_counter() - t0,
                "memory_fraction": fraction}
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def run(model: str, batches: list[int], iters: int, *, smoke: bool) -> dict:
    device = "cpu" if smoke else "cuda"
    out = {"fp16_vs_fp32": fp16_vs_fp32(model, device), "host_stall": host_stall(model, device, batches, iters)}
    if not smoke:
        out["oom_backoff"] = oom_backoff(model, batches[-1], 0.15)
    return out


def render(res: dict) -> None:
    f = res["fp16_vs_fp32"]
    print(f"\n## {f['model']}: {f['low']} vs IEEE fp32 (random weights)\n")
    print(f"min cosine {f['min_cosine']:.5f}, rel. max error {f['rel_max_err']:.2e}, non-finite rows {f['non_finite_rows']}")
    print("\n## host work per batch on the loop thread, before/after\n")
    print("| batch | code | host ms/batch | images/s | peak GPU GiB |\n|---|---|---|---|---|")
    for r in res["host_stall"]:
        print(f"| {r['batch']} | {r['code']} | {r['host_ms_per_batch']:.2f} | {r['images_per_s']:.1f} | {r['peak_gib']:.1f} |")
    if o := res.get("oom_backoff"):
        print(f"\nOOM back-off at {o['memory_fraction']:.0%} of the GPU: asked {o['asked']}, fitted {o['fitted']}, "
              f"{o['rows']} rows in {o['seconds']:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--batches", default="64,128,256,512")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the script, not the GPU")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    a = ap.parse_args()
    if not a.smoke and not torch.cuda.is_available():
        print("gpu_check_extract: no CUDA device visible to torch; run it on a GPU machine (or --smoke).", file=sys.stderr)
        return 2
    model = a.model or ("timm:vit_tiny_patch16_224" if a.smoke else "eva_giant_336")
    batches = [2, 4] if a.smoke else [int(b) for b in a.batches.split(",")]
    res = run(model, batches, 2 if a.smoke else a.iters, smoke=a.smoke)
    render(res)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu_check_extract.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
