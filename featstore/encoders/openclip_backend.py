"""open_clip adapter: spec from open_clip's model + pretrained-tag configs, vectors from encode_image."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import open_clip
import open_clip.factory
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

from featstore.encoders.lazyinit import build_then_load
from featstore.encoders.hubcheck import ensure_hub_weights, missing_weights_message
from featstore.encoders.outputs import OpenClipOutputs, openclip_outputs
from featstore.encoders.registry import Backend, register_backend
from featstore.encoders.spec import EncoderSpec
from featstore.encoders.weights import translate_load_error, validate_weights_file
from featstore.errors import UnknownEncoderError, WeightsError

_RESIZE_TO_CROP = {"shortest": "center", "squash": "squash", "longest": "border"}


def openclip_spec(name: str, arch: str, tag: str | None, *, note: str = "", trained_on: str = "",
                  imagenet_labels: str = "") -> EncoderSpec:
    """Spec whose preprocessing is what open_clip.create_model_and_transforms would return."""
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        close = [m for m in open_clip.list_models() if arch.lower()[:5] in m.lower()][:6]
        raise UnknownEncoderError(f"open_clip has no architecture {arch!r}; similar: {', '.join(close) or 'none'}")
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    if tag and not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UnknownEncoderError(f"open_clip {arch} has no pretrained tag {tag!r}; known: {', '.join(tags) or 'none'}")
    pp = merge_preprocess_dict(asdict(PreprocessCfg()), model_cfg.get("preprocess_cfg", {}))
    pp = merge_preprocess_dict(pp, tag_cfg)
    size = model_cfg["vision_cfg"].get("image_size", pp["size"])
    size = (size, size) if isinstance(size, int) else tuple(size)
    hub = tag_cfg.get("hf_hub") or tag_cfg.get("url") or "none"
    return EncoderSpec(
        name=name, backend="open_clip", model_id=arch, pretrained=tag or None, dim=int(model_cfg["embed_dim"]),
        input_size=size, interpolation=pp["interpolation"], crop_mode=_RESIZE_TO_CROP[pp["resize_mode"]],
        crop_pct=1.0, mean=tuple(pp["mean"]), std=tuple(pp["std"]), pooling="encode_image",
        extra=(("quick_gelu", bool(tag_cfg.get("quick_gelu", model_cfg.get("quick_gelu", False)))),
               ("resize_mode", pp["resize_mode"])),
        weights_hint=f"open_clip hub {hub}", note=note, outputs=openclip_outputs(model_cfg), text=True,
        trained_on=trained_on or f"open_clip {arch} / {tag or '(no tag)'}: contrastive image-text pretraining",
        imagenet_labels=imagenet_labels,
    )


class _ImageTower(torch.nn.Module):
    """Only the vision tower: encode_image(x) == visual(x) when not normalised; the text tower is dropped."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


class OpenClipBackend(Backend):
    prefix = "open_clip"

    def spec_from_name(self, ref: str) -> EncoderSpec:
        arch, _, tag = ref.partition(":")
        return openclip_spec(f"open_clip:{ref}", arch, tag or None)

    def build(self, spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> torch.nn.Module:
        return _ImageTower(self.build_clip(spec, weights=weights, random_weights=random_weights).visual)

    def build_clip(self, spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> torch.nn.Module:
        """The whole CLIP model (image and text towers), for `featstore text`."""
        kw = {"force_quick_gelu": dict(spec.extra).get("quick_gelu", False)}
        if random_weights:
            torch.manual_seed(0)
            model = open_clip.create_model(spec.model_id, pretrained=None, **kw)
        elif weights is not None:
            path = validate_weights_file(weights)
            try:  # open_clip's own checkpoint loader (weights_only, pos-embed resize, key fixes)
                model = _create_pretrained(spec.model_id, str(path), **kw)
            except Exception as e:
                raise translate_load_error(e, path=path, model=f"open_clip {spec.model_id}") from e
        elif spec.pretrained:
            hub = open_clip.get_pretrained_cfg(spec.model_id, spec.pretrained).get("hf_hub")
            ensure_hub_weights(hub, spec)
            try:
                model = _create_pretrained(spec.model_id, spec.pretrained, **kw)
            except Exception as e:
                raise WeightsError(missing_weights_message(spec, e)) from e
        else:
            raise WeightsError(f"{spec.name} has no pretrained tag: pass --weights FILE or use open_clip:<arch>:<tag>")
        return model.eval().requires_grad_(False)

    def outputs_module(self, model: torch.nn.Module, spec: EncoderSpec, names: tuple[str, ...]) -> torch.nn.Module:
        if names == (spec.default_output,):  # exactly today's forward
            return super().outputs_module(model, spec, names)
        super().outputs_module(model, spec, names)  # validates the names
        return OpenClipOutputs(model.visual, names)

    def tokenizer(self, spec: EncoderSpec):
        return open_clip.get_tokenizer(spec.model_id)

    def transform(self, spec: EncoderSpec):
        cfg = PreprocessCfg(size=spec.input_size, mean=spec.mean, std=spec.std, interpolation=spec.interpolation,
                            resize_mode=dict(spec.extra)["resize_mode"])
        return image_transform_v2(cfg, is_train=False)


def _create_pretrained(arch: str, pretrained: str, **kw: object) -> torch.nn.Module:
    """`open_clip.create_model(arch, pretrained=...)` built on the meta device and loaded once by open_clip's
    `load_checkpoint`; device=None because moving meta parameters to the CPU would fail (and does nothing)."""
    def build(device: str | None) -> torch.nn.Module:
        return open_clip.create_model(arch, pretrained=pretrained, weights_only=True, require_pretrained=True,
                                      device=device, **kw)

    lazy = build_then_load(lambda: build(None), library=open_clip.factory, loader="load_checkpoint")
    return lazy or build("cpu")


register_backend(OpenClipBackend())
