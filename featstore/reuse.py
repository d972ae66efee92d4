"""Before embedding: images whose bytes another set of the same encoder, weights and preprocessing already embedded are copied, not recomputed."""

from __future__ import annotations

from featstore.datasets import ImageItem
from featstore.errors import ImageDecodeError
from featstore.images import read_bytes, sha1_bytes
from featstore.setgroup import WriterGroup
from featstore.store.donors import Donors

BLOCK = 512  # images hashed and looked up per step: the writer flushes as usual between steps


def borrow(writer: WriterGroup, split: str, todo: list[ImageItem], done: dict[str, str]) -> list[ImageItem]:
    """Store the vectors donors hold for ``todo`` (every set of the group must find the image); returns the
    items still to embed. Hashes files only when some donor exists, so a store without copies pays nothing."""
    donors = {sid: Donors(w.folder.parent.parent, w.key_fields, exclude=w.folder) for sid, w in writer.writers.items()}
    if not all(donors.values()):
        return todo
    rest: list[ImageItem] = []
    for lo in range(0, len(todo), BLOCK):
        items, shas = [], []
        for item in todo[lo:lo + BLOCK]:
            try:
                shas.append(sha1_bytes(read_bytes(item.path)))
                items.append(item)
            except ImageDecodeError:
                rest.append(item)  # the embedding pass reports it
        found = {sid: d.take(shas) for sid, d in donors.items()}
        common = set.intersection(*(set(hits) for hits, _ in found.values()))
        if common:
            keep = sorted(common)
            feats = {sid: vecs[[hits.index(k) for k in keep]] for sid, (hits, vecs) in found.items()}
            writer.add(split, [items[k].id for k in keep], [items[k].label for k in keep], [shas[k] for k in keep], feats)
            done.update((items[k].id, shas[k]) for k in keep)
        rest += [it for k, it in enumerate(items) if k not in common]
    return rest
