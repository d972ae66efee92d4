"""Several outputs cost one forward pass: `featstore extract` with 3 outputs vs 1, same images, same run.

    python bench/outputs.py [--n 256] [--repeats 3] [--model timm:vit_tiny_patch16_224] [--size 512]

Images: N sketch JPEGs from bench/make_sketches.py (cached under bench/out/). Model: a timm ViT with
random weights, fp32 on CPU, batch 64. Variants are interleaved, each run in a fresh cache folder:

(a) end to end: featstore's extraction loop (decode, forward, store) with the default output only
    (pre_logits) vs three outputs (pre_logits, cls, cls_last4: one forward_intermediates pass, three
    feature sets written); the median loop time of --repeats, and the ratio.
(b) the forward alone on one batch: model(x) vs the three-output module (median of 5 timings).

Prints a markdown table and writes bench/out/outputs.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from featstore.encoders import create_encoder  # noqa: E402
from featstore.extract import ExtractOptions, extract  # noqa: E402
from make_sketches import make_sketches  # noqa: E402

THREE = ["pre_logits", "cls", "cls_last4"]


def run_extract(model: str, data: Path, outputs: list[str] | None, batch: int) -> float:
    with tempfile.TemporaryDirectory() as cache:
        rep = extract(model=model, data=data, cache=cache, random_weights=True, outputs=outputs,
                      options=ExtractOptions(device="cpu", batch_size=batch, workers=0))
        return sum(s.seconds for s in rep.splits)


@torch.inference_mode()
def time_forward(model: torch.nn.Module, x: torch.Tensor, k: int = 5) -> float:
    model(x)  # warm-up
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="timm:vit_tiny_patch16_224")
    ap.add_argument("--size", type=int, default=512, help="side of the generated sketch JPEGs")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    out = Path(__file__).parent / "out"
    data = make_sketches(out / f"sketches-{args.n}-{args.size}", args.n, size=args.size)
    one, three = [], []
    for _ in range(args.repeats):  # interleaved: machine load drifts equally over both
        one.append(run_extract(args.model, data, None, args.batch))
        three.append(run_extract(args.model, data, THREE, args.batch))
    single, _ = create_encoder(args.model, random_weights=True)
    multi, _ = create_encoder(args.model, random_weights=True, outputs=tuple(THREE))
    x = torch.randn(args.batch, 3, 224, 224)
    f1, f3 = time_forward(single, x), time_forward(multi, x)
    res = {"model": args.model, "n": args.n, "size": args.size, "batch": args.batch, "repeats": args.repeats,
           "threads": torch.get_num_threads(), "extract_1_s": one, "extract_3_s": three,
           "extract_ratio": statistics.median(three) / statistics.median(one),
           "forward_1_s": f1, "forward_3_s": f3, "forward_ratio": f3 / f1}
    out.mkdir(exist_ok=True)
    (out / "outputs.json").write_text(json.dumps(res, indent=1))
    print(f"{args.model}, random weights, fp32 CPU, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.n} images {args.size}px, median of {args.repeats}\n")
    print("| measurement | 1 output | 3 outputs (pre_logits, cls, cls_last4) | ratio |")
    print("|---|---|---|---|")
    print(f"| extraction loop, s (img/s) | {statistics.median(one):.2f} ({args.n / statistics.median(one):.1f}) "
          f"| {statistics.median(three):.2f} ({args.n / statistics.median(three):.1f}) | {res['extract_ratio']:.3f} |")
    print(f"| forward of one batch, s | {f1:.3f} | {f3:.3f} | {res['forward_ratio']:.3f} |")


if __name__ == "__main__":
    main()
