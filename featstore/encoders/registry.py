"""Registry of encoder names; generic `timm:<name>` and `open_clip:<arch>[:<tag>]` resolve on demand."""

from __future__ import annotations

import abc
import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from featstore.encoders.spec import EncoderSpec
from featstore.errors import UnknownEncoderError

if TYPE_CHECKING:
    from featstore.encoders.preprocess import Preprocess

_ENTRIES: dict[str, Callable[[], EncoderSpec]] = {}
_BACKENDS: dict[str, "Backend"] = {}


class Backend(abc.ABC):
    """Adapter between a library and the store: spec from a name, model + preprocess from a spec."""

    prefix: str = ""

    def spec_from_name(self, ref: str) -> EncoderSpec:
        raise UnknownEncoderError(f"backend {self.prefix!r} has no generic names")

    @abc.abstractmethod
    def build(self, spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> torch.nn.Module:
        """The frozen module mapping a normalised [B, C, H, W] batch to [B, dim] vectors."""

    @abc.abstractmethod
    def transform(self, spec: EncoderSpec):
        """The library's own eval transform (PIL image -> normalised tensor) for this spec."""

    def outputs_module(self, model: torch.nn.Module, spec: EncoderSpec, names: tuple[str, ...]) -> torch.nn.Module:
        """`model` as a module returning {output: [B, D]} for `names`, all from one forward pass."""
        from featstore.encoders.outputs import SingleOutput, check_outputs

        check_outputs(spec.name, spec.output_dims(), names)
        return SingleOutput(model, names[0])

    def weights_identity(self, spec: EncoderSpec) -> str:
        """What the hub path loads, for the store key."""
        return f"hub:{spec.backend}:{spec.model_id}.{spec.pretrained}"


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.prefix] = backend
    return backend


def backend_for(spec: EncoderSpec) -> Backend:
    return _BACKENDS[spec.backend]


def register_encoder(name: str) -> Callable[[Callable[[], EncoderSpec]], Callable[[], EncoderSpec]]:
    """Decorator: `@register_encoder("dinov2_b14")` on a function returning the EncoderSpec."""

    def deco(fn: Callable[[], EncoderSpec]) -> Callable[[], EncoderSpec]:
        if name in _ENTRIES:
            raise ValueError(f"encoder {name!r} registered twice")
        _ENTRIES[name] = fn
        return fn

    return deco


def registered_names() -> list[str]:
    return sorted(_ENTRIES)


def get_spec(name: str) -> EncoderSpec:
    """Resolve a registry name or a generic `timm:...` / `open_clip:...` reference."""
    if name in _ENTRIES:
        return _ENTRIES[name]()
    prefix, sep, ref = name.partition(":")
    if sep and prefix in _BACKENDS and ref:
        return _BACKENDS[prefix].spec_from_name(ref)
    close = difflib.get_close_matches(name, _ENTRIES, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UnknownEncoderError(
        f"unknown encoder {name!r}{hint}; known: {', '.join(registered_names())}, "
        "or timm:<model> / open_clip:<arch>:<tag>"
    )


def list_specs(pattern: str | None = None) -> list[EncoderSpec]:
    """Registered entries whose name matches a shell-style glob, or contains the pattern when it has no
    wildcard (`featstore models clip`); case-insensitive; all when None."""
    pat = (pattern or "").lower()
    glob = any(c in pat for c in "*?[")
    names = [n for n in registered_names() if not pat or (fnmatch.fnmatch(n.lower(), pat) if glob else pat in n.lower())]
    return [_ENTRIES[n]() for n in names]


def create_encoder(
    spec: EncoderSpec | str, *, weights: str | Path | None = None, random_weights: bool = False,
    outputs: tuple[str, ...] | None = None,
) -> tuple[torch.nn.Module, "Preprocess"]:
    """(frozen model in eval mode, preprocessing) for a spec; weights from a file, the hub, or random.

    With `outputs` the model returns {output: [B, D]} for those outputs (one forward pass); without,
    the [B, dim] tensor of the default output.
    """
    from featstore.encoders.preprocess import Preprocess

    spec = get_spec(spec) if isinstance(spec, str) else spec
    backend = backend_for(spec)
    model = backend.build(spec, weights=Path(weights) if weights else None, random_weights=random_weights)
    if outputs is not None:
        model = backend.outputs_module(model, spec, tuple(outputs))
    model.eval().requires_grad_(False)
    return model, Preprocess.from_transform(backend.transform(spec), channels=spec.channels)
