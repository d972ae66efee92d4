"""The weight-free baseline: grayscale pixels at a small fixed size, flattened (no download, instant)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import transforms as T

from featstore.encoders.registry import Backend, register_backend
from featstore.encoders.spec import EncoderSpec

PIXELS_SIZE = 32


def pixels_spec(name: str = "pixels", *, size: int = PIXELS_SIZE) -> EncoderSpec:
    return EncoderSpec(
        name=name, backend="pixels", model_id=f"gray{size}", pretrained=None, dim=size * size,
        input_size=(size, size), interpolation="bicubic", crop_mode="squash", crop_pct=1.0, mean=(0.0,),
        std=(1.0,), pooling="flatten", channels=1, weights_hint="none needed",
        note="baseline and offline demo: values in [0, 1], one per pixel", outputs=(("flatten", size * size),),
        trained_on="nothing (no weights)",
    )


class _Flatten(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class PixelsBackend(Backend):
    prefix = "pixels"

    def build(self, spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> torch.nn.Module:
        return _Flatten()

    def transform(self, spec: EncoderSpec):
        return T.Compose([T.Resize(spec.input_size, interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])

    def weights_identity(self, spec: EncoderSpec) -> str:
        return "none"


register_backend(PixelsBackend())
