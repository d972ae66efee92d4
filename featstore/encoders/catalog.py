"""The named encoders; adding one is adding one entry here."""

from __future__ import annotations

from featstore.encoders import openclip_backend, pixels, timm_backend
from featstore.encoders.registry import register_encoder
from featstore.encoders.spec import EncoderSpec


@register_encoder("eva_giant_336")
def eva_giant_336() -> EncoderSpec:
    """EVA-CLIP giant fine-tuned on IN-1k: the seeds' best frozen features (93% on ImageNet-Sketch 500)."""
    return timm_backend.timm_spec("eva_giant_336", "eva_giant_patch14_336.clip_ft_in1k")


@register_encoder("clip_vit_l14")
def clip_vit_l14() -> EncoderSpec:
    return openclip_backend.openclip_spec("clip_vit_l14", "ViT-L-14", "openai")


@register_encoder("clip_vit_l14_336")
def clip_vit_l14_336() -> EncoderSpec:
    return openclip_backend.openclip_spec("clip_vit_l14_336", "ViT-L-14-336", "openai")


def _dinov2(name: str, arch: str) -> EncoderSpec:
    # Deliberate override: timm's DINOv2 config is 518 px; at 224 (resize 256, center crop) a ViT costs
    # ~6x less and the seed reports used 224. timm resamples the position embedding when loading.
    return timm_backend.timm_spec(
        name, f"{arch}.lvd142m", model_kwargs={"img_size": 224},
        data_overrides={"input_size": (3, 224, 224), "crop_pct": 224 / 256, "crop_mode": "center"},
        note="224 px (resize 256, center crop) instead of timm's 518: 6x cheaper, as in the reports",
    )


for _size, _arch in (("s", "vit_small"), ("b", "vit_base"), ("l", "vit_large"), ("g", "vit_giant")):
    register_encoder(f"dinov2_{_size}14")(lambda _n=f"dinov2_{_size}14", _a=f"{_arch}_patch14_dinov2": _dinov2(_n, _a))


@register_encoder("pixels")
def pixels_baseline() -> EncoderSpec:
    return pixels.pixels_spec()
