"""Label leakage: an encoder fine-tuned on ImageNet labels, probed on ImageNet classes (ImageNet-Sketch)."""

from __future__ import annotations

from featstore.classnames import imagenet_fraction
from featstore.errors import UnknownEncoderError

_THRESHOLD = 0.5  # most classes are ImageNet's: a subset (MVA's 500 of ImageNet-Sketch) counts


def label_leak_warning(encoder: str, classes: list[str]) -> str | None:
    """A one-line warning when `encoder` saw ImageNet labels and the classes are ImageNet classes."""
    frac = imagenet_fraction(classes)
    if frac < _THRESHOLD:  # checked first: the encoder catalog imports open_clip (~3.7 s of every `probes fit`)
        return None
    from featstore.encoders import get_spec

    try:
        spec = get_spec(encoder)
    except UnknownEncoderError:
        return None  # an imported set: its provenance is unknown
    if not spec.imagenet_labels:
        return None
    which = "ImageNet-1k" if spec.imagenet_labels == "in1k" else "ImageNet-22k (a superset of ImageNet-1k)"
    return (f"{encoder} was trained on {which} labels and {frac:.0%} of this dataset's {len(classes)} classes are "
            "ImageNet-1k classes: its features have seen these labels (label leakage). Fine for a leaderboard; "
            "not a 'frozen foundation encoder' result.")


def label_leak_warnings(refs: list[str], *, cache=None) -> list[str]:
    """The warnings for the feature sets that `probes fit --features` names (one per leaking encoder)."""
    from featstore.store import open_feature_set

    sets = [open_feature_set(r, cache=cache) for r in refs]
    found = {s.encoder: label_leak_warning(s.encoder, s.classes) for s in sets}
    return [w for w in found.values() if w]
