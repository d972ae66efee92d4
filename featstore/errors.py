"""Exception types the library raises; the CLI turns each into one line and exit code 1."""

from __future__ import annotations


class FeatstoreError(Exception):
    """Base of every error meant for the user: the message is the whole explanation."""


class UnknownEncoderError(FeatstoreError, KeyError):
    """A registry name that does not exist (the message lists close matches)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(FeatstoreError):
    """Weights are missing, unreadable, unsafe or do not fit the model."""


class LayoutError(FeatstoreError):
    """The dataset folder does not match a supported layout."""


class ImageDecodeError(FeatstoreError):
    """One image could not be turned into pixels; the reason is recorded, the run goes on."""


class StoreError(FeatstoreError):
    """The feature store is missing, inconsistent, or a request does not match it."""


class StoreLockedError(StoreError):
    """Another process is writing the same feature set."""


class NonFiniteError(FeatstoreError):
    """The encoder produced NaN or Inf for some images; nothing of them is stored."""


class ExtractionError(FeatstoreError):
    """Extraction could not run (bad options, device unavailable, ...)."""
