"""Split a library's eval transform into a PIL geometry part (workers) and a normalisation (device).

Workers then ship uint8 tensors (4x smaller than float) and the normalisation runs batched on the
model's device; a grayscale source is resized as one channel and replicated afterwards, which gives
the same numbers as converting to RGB first at about half the cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from featstore.errors import ExtractionError

_TO_TENSOR_NAMES = {"ToTensor", "MaybeToTensor", "PILToTensor", "MaybePILToTensor"}
_RGB_CONVERTERS = {"_convert_to_rgb", "convert_to_rgb", "_convert_image_to_rgb", "MaybeConvertMode"}


@dataclass(frozen=True)
class Preprocess:
    """Geometry ops on PIL images + per-channel mean/std, equivalent to the library transform."""

    geometry: tuple[Callable[[Image.Image], Image.Image], ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3

    @classmethod
    def from_transform(cls, transform: T.Compose, *, channels: int = 3) -> "Preprocess":
        """Decompose a torchvision Compose of the usual eval shape: PIL ops, ToTensor, Normalize."""
        ops = list(getattr(transform, "transforms", [transform]))
        geometry: list[Callable] = []
        mean = std = None
        seen_tensor = False
        for op in ops:
            name = getattr(op, "__name__", type(op).__name__)
            if name in _RGB_CONVERTERS:
                continue  # mode conversion is done by the decoder (gray stays one channel until the end)
            if name in _TO_TENSOR_NAMES:
                seen_tensor = True
            elif isinstance(op, T.Normalize) and seen_tensor:
                mean, std = tuple(map(float, op.mean)), tuple(map(float, op.std))
            elif not seen_tensor:
                geometry.append(op)
            else:
                raise ExtractionError(f"cannot split eval transform: unexpected step {name} after ToTensor")
        if not seen_tensor:
            raise ExtractionError("cannot split eval transform: no ToTensor step")
        mean = mean or (0.0,) * channels
        std = std or (1.0,) * channels
        return cls(geometry=tuple(geometry), mean=mean, std=std, channels=channels)

    def to_uint8(self, img: Image.Image) -> torch.Tensor:
        """PIL image (mode L or RGB) -> uint8 [channels, H, W] after the geometry ops."""
        if self.channels == 1 and img.mode != "L":
            img = img.convert("L")
        elif self.channels == 3 and img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        for op in self.geometry:
            img = op(img)
        arr = np.asarray(img)  # read-only view of PIL's buffer: exactly one copy below
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arr.shape[0] != self.channels:
            arr = np.broadcast_to(arr, (self.channels, *arr.shape[1:]))
        return torch.from_numpy(np.array(arr, order="C"))

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float32, the same operations (and rounding) as ToTensor + Normalize."""
        x = batch.to(torch.float32).div_(255)
        mean, std = _stats(self.mean, self.std, x.device)
        return x.sub_(mean).div_(std)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """One image -> normalised float [C, H, W] (for tests and one-off use)."""
        return self.normalize(self.to_uint8(img)[None])[0]


@lru_cache(maxsize=16)
def _stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """mean/std uploaded once per device, not twice per batch (each upload a blocking host-to-device copy)."""
    def put(v: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    return put(mean), put(std)
