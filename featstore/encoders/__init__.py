"""Encoder registry: short names -> EncoderSpec -> (frozen model, preprocessing)."""

from featstore.encoders import catalog as _catalog  # noqa: F401  (registers the named entries)
from featstore.encoders.registry import create_encoder, get_spec, list_specs, register_encoder
from featstore.encoders.spec import EncoderSpec

__all__ = ["EncoderSpec", "create_encoder", "get_spec", "list_specs", "register_encoder"]
