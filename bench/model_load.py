"""Building an encoder from a weights file: seconds and peak RSS with and without the meta-device build.

    python bench/model_load.py [--model vit_base_patch16_224] [--repeat 2]

Writes random weights of a timm model to a safetensors file, then in fresh processes builds the model the
library's plain way (random init on the CPU, then the file copied in: what featstore did before) and the
way `create_encoder` does now (meta-device parameters, the file's tensors assigned once), and checks
both hold identical tensors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, resource, sys, time
import torch, timm
torch.set_num_threads(1)  # torchrun gives each rank one OMP thread
from featstore.encoders import create_encoder
mode, name, path = sys.argv[1:]
t = time.perf_counter()
if mode == "plain":
    model = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": path})
else:
    model, _ = create_encoder("timm:" + name, weights=path)
seconds = time.perf_counter() - t
digest = float(sum(p.double().sum() for p in model.state_dict().values()))
print(json.dumps({"seconds": seconds, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
                  "digest": digest}))
"""


def run(mode: str, name: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, name, str(path)], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    import timm
    import torch
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        model = timm.create_model(a.model, pretrained=False, num_classes=0)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        n = sum(p.numel() for p in model.parameters())
        del model
        print(f"{a.model}: {n / 1e6:.0f}M parameters, file {path.stat().st_size / 2**20:.0f} MiB (torch {torch.__version__})")
        digests = set()
        for mode in ("plain", "meta"):
            runs = [run(mode, a.model, path) for _ in range(a.repeat)]
            digests |= {r["digest"] for r in runs}
            best = min(runs, key=lambda r: r["seconds"])
            print(f"  {mode:5s} build+load {best['seconds']:.2f} s (best of {a.repeat}), peak RSS "
                  f"{max(r['rss_mib'] for r in runs)} MiB")
        print("  identical tensors:", len(digests) == 1)


if __name__ == "__main__":
    main()
