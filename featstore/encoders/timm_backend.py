"""timm adapter: spec from timm's pretrained cfg, model via timm.create_model(num_classes=0)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import timm
import timm.models._builder as timm_builder
import torch
from timm.data import create_transform, resolve_data_config

from featstore.encoders.outputs import TimmOutputs, timm_outputs
from featstore.encoders.registry import Backend, register_backend
from featstore.encoders.hubcheck import ensure_hub_weights, missing_weights_message
from featstore.encoders.spec import EncoderSpec
from featstore.encoders.lazyinit import build_then_load
from featstore.encoders.weights import translate_load_error, validate_weights_file
from featstore.errors import UnknownEncoderError, WeightsError


def timm_spec(
    name: str, model_name: str, *, model_kwargs: dict[str, Any] | None = None,
    data_overrides: dict[str, Any] | None = None, note: str = "", trained_on: str = "",
) -> EncoderSpec:
    """Spec whose preprocessing is timm's own resolved data config (plus explicit overrides)."""
    kwargs = dict(model_kwargs or {})
    try:
        with torch.device("meta"):  # architecture only: no memory, no weights, no download
            model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "Invalid pretrained tag" in str(e):
            close = timm.list_models(f"*{model_name.split('.')[0].split('_')[0]}*")[:6]
            raise UnknownEncoderError(f"timm has no model {model_name!r}; similar: {', '.join(close) or 'none'}") from e
        raise
    cfg = resolve_data_config(dict(data_overrides or {}), model=model)
    arch, _, tag = model_name.partition(".")
    tag = tag or (model.pretrained_cfg or {}).get("tag") or ""
    labels = imagenet_labels(tag, (model.pretrained_cfg or {}).get("num_classes"))
    hub = (model.pretrained_cfg or {}).get("hf_hub_id") or (model.pretrained_cfg or {}).get("url") or "none"
    return EncoderSpec(
        name=name, backend="timm", model_id=arch, pretrained=tag or None,
        dim=int(model.num_features), input_size=tuple(cfg["input_size"][1:]), interpolation=cfg["interpolation"],
        crop_mode=cfg.get("crop_mode", "center"), crop_pct=float(cfg["crop_pct"]), mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]), pooling=str(getattr(model, "global_pool", "") or "default"),
        model_kwargs=tuple(sorted(kwargs.items())), weights_hint=f"timm hub {hub}", note=note,
        outputs=timm_outputs(model), imagenet_labels=labels,
        trained_on=trained_on or f"timm tag {tag or '(none)'}"
        + (f"; trained on ImageNet-{labels[2:]} labels" if labels else ""),
    )


def imagenet_labels(tag: str, num_classes: int | None) -> str:
    """Whether a timm checkpoint saw ImageNet labels: its tag (…_in1k, in22k) or a 1000-class head."""
    t = tag.lower()
    if "in1k" in t or num_classes == 1000:
        return "in1k"
    if "in22k" in t or "in21k" in t or (num_classes or 0) in (21841, 21843, 11821, 10450):
        return "in22k"
    return ""


class TimmBackend(Backend):
    prefix = "timm"

    def spec_from_name(self, ref: str) -> EncoderSpec:
        return timm_spec(f"timm:{ref}", ref)

    def _full_name(self, spec: EncoderSpec) -> str:
        return f"{spec.model_id}.{spec.pretrained}" if spec.pretrained else spec.model_id

    def build(self, spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> torch.nn.Module:
        kwargs = dict(spec.model_kwargs, num_classes=0)
        name = self._full_name(spec)
        if random_weights:
            torch.manual_seed(0)  # the same random model on every run, so resume stays consistent
            return timm.create_model(name, pretrained=False, **kwargs)
        if weights is not None:
            path = validate_weights_file(weights)
            try:  # timm's own loader: filter_fn, classifier removal for num_classes=0, pos-embed resampling
                with _KeyMismatch() as mismatch:
                    model = create_pretrained(name, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
            except Exception as e:
                raise translate_load_error(e, path=path, model=f"timm {name}") from e
            if mismatch.problems:  # timm loads non-strictly when it drops the classifier: never accept a partial load
                raise WeightsError(f"weights {path} do not load into timm {name}: {'; '.join(mismatch.problems)[:300]}")
            return model
        cfg = timm.models.get_pretrained_cfg(name)
        ensure_hub_weights(cfg.hf_hub_id if cfg else None, spec)
        try:
            return create_pretrained(name, **kwargs)
        except Exception as e:
            raise WeightsError(missing_weights_message(spec, e)) from e

    def outputs_module(self, model: torch.nn.Module, spec: EncoderSpec, names: tuple[str, ...]) -> torch.nn.Module:
        if names == (spec.default_output,):  # exactly today's forward
            return super().outputs_module(model, spec, names)
        super().outputs_module(model, spec, names)  # validates the names
        return TimmOutputs(model, names)

    def transform(self, spec: EncoderSpec):
        return create_transform(
            input_size=(spec.channels, *spec.input_size), interpolation=spec.interpolation, mean=spec.mean,
            std=spec.std, crop_pct=spec.crop_pct, crop_mode=spec.crop_mode, is_training=False,
        )


class _KeyMismatch(logging.Handler):
    """Collects timm's missing/unexpected-key reports, which it only logs when loading non-strictly."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.problems: list[str] = []
        self._logger = logging.getLogger("timm.models._builder")

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith(("Missing keys", "Unexpected keys", "Unable to convert")):
            self.problems.append(msg.split(" discovered")[0].split(" found while")[0])

    def __enter__(self) -> "_KeyMismatch":
        self._old_level = self._logger.level
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)


def create_pretrained(name: str, **kwargs: Any) -> torch.nn.Module:
    """`timm.create_model(name, pretrained=True, **kwargs)`, built on the meta device and loaded once
    by timm's `load_pretrained` (which `build_model_with_cfg` looks up in timm.models._builder)."""
    build = lambda: timm.create_model(name, pretrained=True, **kwargs)  # noqa: E731
    return build_then_load(build, library=timm_builder, loader="load_pretrained") or build()


register_backend(TimmBackend())
