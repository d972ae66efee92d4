"""The named encoders; adding one is adding one entry here."""

from __future__ import annotations

from featstore.encoders import openclip_backend, pixels, timm_backend
from featstore.encoders.registry import register_encoder
from featstore.encoders.spec import EncoderSpec


@register_encoder("eva_giant_336")
def eva_giant_336() -> EncoderSpec:
    """EVA-CLIP giant fine-tuned on IN-1k: the seeds' best frozen features (93% on ImageNet-Sketch 500)."""
    return timm_backend.timm_spec(
        "eva_giant_336", "eva_giant_patch14_336.clip_ft_in1k",
        trained_on="EVA-CLIP giant image tower (MIM, then image-text on LAION-400M), then FINE-TUNED ON "
                   "ImageNet-1k LABELS (timm clip_ft_in1k): ImageNet(-Sketch) classes are label leakage",
    )


_OPENAI = "OpenAI CLIP: 400M web image-text pairs (WIT), contrastive; no ImageNet labels"


@register_encoder("clip_vit_l14")
def clip_vit_l14() -> EncoderSpec:
    return openclip_backend.openclip_spec("clip_vit_l14", "ViT-L-14", "openai", trained_on=_OPENAI)


@register_encoder("clip_vit_l14_336")
def clip_vit_l14_336() -> EncoderSpec:
    return openclip_backend.openclip_spec("clip_vit_l14_336", "ViT-L-14-336", "openai", trained_on=_OPENAI)


@register_encoder("eva02_clip_l14")
def eva02_clip_l14() -> EncoderSpec:
    return openclip_backend.openclip_spec(
        "eva02_clip_l14", "EVA02-L-14", "merged2b_s4b_b131k",
        trained_on="EVA02-CLIP-L: MIM pretraining (IN-22k images, no labels) then image-text on Merged-2B")


@register_encoder("eva01_clip_g14")
def eva01_clip_g14() -> EncoderSpec:
    return openclip_backend.openclip_spec(
        "eva01_clip_g14", "EVA01-g-14", "laion400m_s11b_b41k",
        trained_on="EVA01-CLIP-g: EVA MIM pretraining (no labels) then image-text on LAION-400M")


@register_encoder("laion_vit_h14")
def laion_vit_h14() -> EncoderSpec:
    return openclip_backend.openclip_spec(
        "laion_vit_h14", "ViT-H-14", "laion2b_s32b_b79k",
        trained_on="OpenCLIP ViT-H/14: image-text on LAION-2B (English), contrastive; no ImageNet labels")


def _dinov2(name: str, arch: str) -> EncoderSpec:
    # Deliberate override: timm's DINOv2 config is 518 px; at 224 (resize 256, center crop) a ViT costs
    # ~6x less and the seed reports used 224. timm resamples the position embedding when loading.
    return timm_backend.timm_spec(
        name, f"{arch}.lvd142m", model_kwargs={"img_size": 224},
        data_overrides={"input_size": (3, 224, 224), "crop_pct": 224 / 256, "crop_mode": "center"},
        note="224 px (resize 256, center crop) instead of timm's 518: 6x cheaper, as in the reports",
        trained_on="DINOv2 self-supervised on LVD-142M (curated web images, retrieved near ImageNet among others); "
                   "no labels",
    )


for _size, _arch in (("s", "vit_small"), ("b", "vit_base"), ("l", "vit_large"), ("g", "vit_giant")):
    register_encoder(f"dinov2_{_size}14")(lambda _n=f"dinov2_{_size}14", _a=f"{_arch}_patch14_dinov2": _dinov2(_n, _a))


@register_encoder("pixels")
def pixels_baseline() -> EncoderSpec:
    return pixels.pixels_spec()
