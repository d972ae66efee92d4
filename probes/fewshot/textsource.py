"""Class-name text embeddings for the text-aware heads: a store text set by name, or an .npz of arrays."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from probes.data import ProbesError


def resolve_text(spec: str, *, cache: Path | None, classes: list[str]) -> Any:
    """`FILE.npz` (arrays `classes`, `embeddings` [K, D] or [K, T, D], optional `logit_scale`) or a text set name.

    Either way the class list must be the feature set's, in the same (sorted) order: embeddings
    are matched to labels by position.
    """
    path = Path(spec)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"text file {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            if "embeddings" not in z:
                raise ProbesError(f"{path} has no 'embeddings' array (has: {', '.join(z.files)})")
            scale = float(z["logit_scale"]) if "logit_scale" in z else None
            text = SimpleNamespace(embeddings=z["embeddings"].astype(np.float32), logit_scale=scale,
                                   classes=[str(c) for c in z["classes"]] if "classes" in z else None)
    else:
        try:
            from featstore.store.textset import load_text_set
        except ImportError:
            raise ProbesError(f"text set {spec!r}: this build has no store text sets; pass an .npz file "
                              "(classes, embeddings [K, D] or [K, T, D])") from None
        text = load_text_set(spec, cache=cache)
    got = getattr(text, "classes", None)
    if got is not None and list(got) != list(classes):
        raise ProbesError(f"text classes differ from the features' ({len(got)} vs {len(classes)}; "
                          f"first: {got[:3]} vs {classes[:3]}); they must be the same sorted class list")
    if len(np.asarray(text.embeddings)) != len(classes):
        raise ProbesError(f"text has {len(np.asarray(text.embeddings))} classes, the features {len(classes)}")
    return text
