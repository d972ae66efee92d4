"""EncoderSpec: everything that decides what vector an image becomes, as plain data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EncoderSpec:
    """A frozen description of one encoder: backend model id plus the preprocessing its weights expect.

    Built from the library's own config (timm pretrained cfg, open_clip preprocess cfg); a catalog
    entry may override a field on purpose and then says why in `note`.
    """

    name: str
    backend: str  # "timm" | "open_clip" | "pixels"
    model_id: str  # timm architecture / open_clip architecture
    pretrained: str | None  # timm tag / open_clip pretrained tag; None: weights only from --weights
    dim: int
    input_size: tuple[int, int]  # (height, width) of the model input
    interpolation: str
    crop_mode: str  # "squash" (resize to size) | "center" (resize shortest side, center crop)
    crop_pct: float  # center mode: resize to size / crop_pct before the crop
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pooling: str
    channels: int = 3
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    weights_hint: str = ""  # where the weights come from, for `featstore models`
    note: str = ""  # why an entry deliberately differs from the library config
    extra: tuple[tuple[str, Any], ...] = field(default=())  # backend specifics (e.g. quick_gelu)
    # Not in the key (they describe, not change, the vectors of the default output):
    outputs: tuple[tuple[str, int], ...] = ()  # (name, dim) a forward pass can yield; the first is the default
    trained_on: str = ""  # provenance of the weights, label fine-tuning included
    imagenet_labels: str = ""  # "in1k" / "in22k" when the weights were trained on ImageNet labels, else ""
    text: bool = False  # has a text tower: `featstore text` can embed class names with it

    def key_fields(self) -> dict[str, Any]:
        """Fields that change the stored vectors (the name is only a label, so it is left out)."""
        d = dataclasses.asdict(self)
        for k in ("name", "weights_hint", "note", "outputs", "trained_on", "imagenet_labels", "text"):
            d.pop(k)
        d["model_kwargs"] = dict(self.model_kwargs)
        d["extra"] = dict(self.extra)
        return d

    @property
    def default_output(self) -> str:
        return self.outputs[0][0] if self.outputs else "default"

    def output_dims(self) -> dict[str, int]:
        return dict(self.outputs) if self.outputs else {"default": self.dim}

    @property
    def input_desc(self) -> str:
        h, w = self.input_size
        return f"{h}" if h == w else f"{h}x{w}"
