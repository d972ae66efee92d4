"""On a CUDA machine: every output and view in fp16 / bf16 against the library's fp32, then eva_giant_336 speed.

    python bench/gpu_check.py [--batches 64,128,256,512] [--no-compile] [--quick] [--out DIR] [--device cpu]

(1) Fidelity: tiny random-init models of each family (timm ViT, timm Eva, open_clip ViT) run through
    featstore's own path (uint8 batch -> device normalisation -> channels_last -> autocast, the
    multi-output module) for every output and for the hflip view, against the library's computation
    in fp32 on the same pixels. Reports the worst cosine similarity and relative max error; passes at
    cosine >= 0.999.
(2) Throughput: eva_giant_336 with random weights (built on the GPU), fp16 autocast, channels_last,
    with and without torch.compile, at each batch size: images/s of featstore's encode_batch (host
    uint8 -> device included) and peak GPU memory; plus the three-output module at one batch size.
(3) Extraction path (bench/gpu_check_extract.py, skip with --no-extract): eva_giant_336 fp16 vs IEEE
    fp32 cosine, host work per batch before/after with images/s and peak memory at each batch size,
    and the out-of-memory back-off under a memory cap.
(4) The extraction loop (bench/gpu_check_loop.py, skip with --no-loop): featstore's own loop over generated
    JPEGs with prefetch (side-stream upload, rows waited for a batch later) and the shard writer thread
    off/on: images/s and host stall per batch (loop ms per batch minus the model alone).

Needs CUDA: on a machine without it, says so and exits with status 2. `--device cpu` runs what a CPU can
run, to check the script: (3) and (4) on a tiny timm ViT (numbers meaningless), (1) and (2) skipped. Prints markdown tables and
writes gpu_check.json to --out (default: bench/out).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featstore.encoders import create_encoder, get_spec  # noqa: E402
from featstore.runtime import encode_batch, prepare_model, resolve_runtime  # noqa: E402
from featstore.views import apply_view  # noqa: E402

TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _tiny_models() -> list[str]:
    import open_clip

    path = Path(tempfile.mkdtemp()) / "TinyClip-gpu.json"
    path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(path)
    return ["timm:vit_tiny_patch16_224", "timm:eva02_tiny_patch14_224", "open_clip:TinyClip-gpu"]


@torch.inference_mode()
def _reference(name: str, output: str, x: torch.Tensor) -> torch.Tensor:
    """The library's own fp32 computation of one output (independent of featstore.encoders.outputs)."""
    model, _ = create_encoder(name, random_weights=True)
    model = model.cuda().float()
    if name.startswith("open_clip"):
        v = model.visual
        if output == "embed":
            return v(x)
        pooled, _ = v._pool(v.transformer(v._embeds(x)))
        return pooled
    if output == "pre_logits":
        return model(x)
    feats = model.forward_features(x)
    if output == "cls":
        return feats[:, 0]
    if output == "patch_mean":
        return feats[:, model.num_prefix_tokens:].mean(1)
    inter = model.forward_intermediates(x, indices=4, return_prefix_tokens=True, norm=True, intermediates_only=True)
    return torch.cat([p[:, 0] for _, p in inter], dim=1)


def fidelity(precisions: list[str]) -> list[dict]:
    rows = []
    for name in _tiny_models():
        spec = get_spec(name)
        outputs = tuple(o for o, _ in spec.outputs)
        h, w = spec.input_size
        u8 = torch.randint(0, 256, (8, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        for precision in precisions:
            rt = resolve_runtime("cuda", precision)
            model, pre = create_encoder(name, random_weights=True, outputs=outputs)
            model = prepare_model(model, rt)
            for view in ("orig", "hflip"):
                got = encode_batch(model, apply_view(view, u8), pre, rt)
                x = pre.normalize(apply_view(view, u8).cuda())
                for output in outputs:
                    ref = _reference(name, output, x).float().cpu()
                    cos = torch.nn.functional.cosine_similarity(got[output], ref, dim=1).min().item()
                    rel = ((got[output] - ref).abs().max() / ref.abs().max()).item()
                    rows.append({"model": name, "precision": precision, "view": view, "output": output,
                                 "min_cosine": cos, "rel_max_err": rel, "ok": cos >= 0.999})
    return rows


def _time(model: torch.nn.Module, pre, rt, batch: int, iters: int) -> float:
    u8 = torch.randint(0, 256, (batch, 3, 336, 336), dtype=torch.uint8).pin_memory()
    for _ in range(2):  # warm-up (and compilation)
        encode_batch(model, u8, pre, rt)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        encode_batch(model, u8, pre, rt)
    torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t0)


def throughput(batches: list[int], compiles: list[bool], iters: int) -> list[dict]:
    rt = resolve_runtime("cuda", "fp16")
    rows = []
    for outputs in (None, ("pre_logits", "cls", "cls_last4")):
        for compile in compiles if outputs is None else [False]:
            with torch.device("cuda"):  # random init on the GPU: seconds instead of minutes for 1B parameters
                model, pre = create_encoder("eva_giant_336", random_weights=True, outputs=outputs)
            model = prepare_model(model, rt, compile=compile)
            for batch in batches if outputs is None else [max(batches[0], min(256, batches[-1]))]:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                try:
                    rate = _time(model, pre, rt, batch, iters)
                    peak = torch.cuda.max_memory_allocated() / 2**30
                except torch.cuda.OutOfMemoryError:
                    rate, peak = float("nan"), float("nan")
                rows.append({"outputs": ",".join(outputs or ("pre_logits",)), "compile": compile, "batch": batch,
                             "images_per_s": rate, "peak_gib": peak})
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
            del model
            torch.cuda.empty_cache()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,128,256,512")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="batches 64,256, 3 timed iterations")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-extract", action="store_true", help="skip the extraction-path checks (3)")
    ap.add_argument("--no-loop", action="store_true", help="skip the extraction-loop checks (4)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: only (3) and (4), on a tiny model, to check the script runs")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = ap.parse_args()
    if args.device == "cpu":
        return _cpu_smoke(args)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; this check only runs on a GPU machine "
              "(nothing else in featstore needs one).", file=sys.stderr)
        return 2
    batches = [64, 256] if args.quick else [int(b) for b in args.batches.split(",")]
    iters = 3 if args.quick else args.iters
    precisions = ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    fid = fidelity(precisions)
    print(f"## fidelity on {torch.cuda.get_device_name()} (featstore path vs library fp32)\n")
    print("| model | precision | view | output | min cosine | rel. max error | ok |\n|---|---|---|---|---|---|---|")
    for r in fid:
        print(f"| {r['model']} | {r['precision']} | {r['view']} | {r['output']} | {r['min_cosine']:.5f} "
              f"| {r['rel_max_err']:.2e} | {'yes' if r['ok'] else 'NO'} |")
    speed = throughput(batches, [False] if args.no_compile else [False, True], iters)
    print("\n## eva_giant_336 (random weights), fp16 autocast, channels_last\n")
    print("| outputs | compile | batch | images/s | peak GPU memory (GiB) |\n|---|---|---|---|---|")
    for r in speed:
        print(f"| {r['outputs']} | {r['compile']} | {r['batch']} | {r['images_per_s']:.1f} | {r['peak_gib']:.1f} |")
    extract = None
    if not args.no_extract:
        import gpu_check_extract

        extract = gpu_check_extract.run("eva_giant_336", batches, iters, smoke=False)
        gpu_check_extract.render(extract)
    loop = None
    if not args.no_loop:
        import gpu_check_loop

        loop = gpu_check_loop.run("eva_giant_336", "cuda", batches[0], 2048, iters)
        gpu_check_loop.render(loop)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps({"device": torch.cuda.get_device_name(), "fidelity": fid,
                                                         "throughput": speed, "extract": extract, "loop": loop},
                                                        indent=1))
    return 0 if all(r["ok"] for r in fid) else 1


def _cpu_smoke(args: argparse.Namespace) -> int:
    """The CPU-runnable parts on a tiny model: the script works; the numbers say nothing about a GPU."""
    import gpu_check_extract
    import gpu_check_loop

    print("gpu_check --device cpu: (1) fidelity and (2) eva_giant_336 throughput need CUDA, skipped", file=sys.stderr)
    tiny = "timm:vit_tiny_patch16_224"
    if not args.no_extract:
        gpu_check_extract.render(gpu_check_extract.run(tiny, [2, 4], 2, smoke=True))
    if not args.no_loop:
        gpu_check_loop.render(gpu_check_loop.run(tiny, "cpu", 4, 16, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
