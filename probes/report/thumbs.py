"""Small base64 JPEG thumbnails of dataset images, found through the feature set's recorded dataset root."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from featstore.datasets import scan_dataset
from featstore.errors import FeatstoreError
from featstore.images import decode_image
from featstore.store import FeatureSet


class Thumbnails:
    """``uri(split, id)`` -> a data: URI (``None`` when the image is no longer where it was extracted from)."""

    def __init__(self, fs: FeatureSet | None, *, px: int = 72) -> None:
        self.px = px
        self._paths: dict[tuple[str, str], Path] = {}
        self._cache: dict[tuple[str, str], str | None] = {}
        self.note = ""
        root = (fs.dataset or {}).get("root") if fs is not None else None
        if not root:
            self.note = "no dataset root recorded: no thumbnails"
            return
        try:
            ds = scan_dataset(root)
        except FeatstoreError as e:
            self.note = f"images not found ({e}): no thumbnails"
            return
        self._paths = {(s, it.id): it.path for s, items in ds.splits.items() for it in items}

    def uri(self, split: str, image_id: str) -> str | None:
        key = (split, image_id)
        if key not in self._cache:
            self._cache[key] = self._make(self._paths.get(key))
        return self._cache[key]

    def _make(self, path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            im = decode_image(path).convert("RGB")
        except FeatstoreError:
            return None
        im.thumbnail((self.px, self.px))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
