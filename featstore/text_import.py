"""`featstore import NAME --text FILE.npz`: class-name embeddings computed elsewhere, as a text set."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from featstore.encoders.weights import file_identity
from featstore.errors import StoreError
from featstore.store.textset import write_text_set

DEFAULT_LOGIT_SCALE = 100.0  # OpenAI CLIP's (and most open_clip models') trained value


def import_text(name: str, path: Path, *, cache: Path | None = None) -> Path:
    """npz with `classes` [K] and `embeddings` [K, D] or [K, T, D]; optional `templates` [T], `logit_scale`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise StoreError(f"cannot read {path} as .npz (object arrays are refused): {e}") from e
    missing = [k for k in ("classes", "embeddings") if k not in arrays]
    if missing:
        raise StoreError(f"{path.name} lacks {', '.join(missing)}; has: {', '.join(arrays) or 'nothing'}")
    emb = np.asarray(arrays["embeddings"], dtype=np.float32)
    emb = emb[:, None, :] if emb.ndim == 2 else emb
    templates = ([str(t) for t in arrays["templates"]] if "templates" in arrays
                 else ["{}"] if emb.shape[1] == 1 else [f"(template {t})" for t in range(emb.shape[1])])
    scale = float(arrays["logit_scale"]) if "logit_scale" in arrays else DEFAULT_LOGIT_SCALE
    return write_text_set(cache, encoder=name, key_fields={"import": name, "file": file_identity(path)},
                          classes=[str(c) for c in arrays["classes"]], templates=templates, embeddings=emb,
                          logit_scale=scale)
