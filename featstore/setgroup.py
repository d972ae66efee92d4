"""Several feature sets (outputs x views) filled from one pass: one writer each, used as one by extraction.

Why one set per (output, view) and not a wider [N, V, D] array: every reader (probes, import, merge,
integrity checks) stays unchanged, an output added later extends the store without rewriting the others,
and each set keeps its own content key, so the default output and view keep today's key.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import numpy as np

from featstore.store import FeatureSetWriter
from featstore.store.manifest import SplitIndex

SetId = tuple[str, str]  # (output, view)


class WriterGroup:
    """The writers of every set of one extraction; an image is stored when every set holds it."""

    def __init__(self, writers: dict[SetId, FeatureSetWriter]) -> None:
        self.writers = writers
        self.primary = next(iter(writers.values()))
        self._stack = ExitStack()

    def __enter__(self) -> "WriterGroup":
        with ExitStack() as stack:
            for w in self.writers.values():
                stack.enter_context(w)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    @property
    def repairs(self) -> list[str]:
        """What opening each set found damaged and fixed, named by set when there are several."""
        if len(self.writers) == 1:
            return self.primary.repairs
        return [f"{o}@{v}: {note}" for (o, v), w in self.writers.items() for note in w.repairs]

    def known(self, split: str) -> dict[str, list[tuple[str, int, int]]]:
        return self.primary.known(split)

    def part_failures(self, split: str) -> dict[str, str]:
        return self.primary.part_failures(split)

    def is_stored(self, split: str, image_id: str, sha1: str) -> bool:
        return all(w.is_stored(split, image_id, sha1) for w in self.writers.values())

    def stored_hashes(self, split: str, ids: set[str]) -> dict[str, set[str]]:
        """id -> the content hashes every set holds a vector for, for the given ids."""
        per_set = [w.stored_hashes(split, ids) for w in self.writers.values()]
        return {i: set.intersection(*(s.get(i, set()) for s in per_set)) for i in per_set[0]}

    def add(self, split: str, ids: list[str], labels: list[int], sha1: list[str],
            features: dict[SetId, np.ndarray]) -> None:
        """Each set gets the rows it lacks (a set added by a later run is filled without duplicating others)."""
        for sid, w in self.writers.items():
            rows = [k for k, (i, h) in enumerate(zip(ids, sha1)) if not w.is_stored(split, i, h)]
            if rows:
                w.add(split, [ids[k] for k in rows], [labels[k] for k in rows], [sha1[k] for k in rows],
                      features[sid][rows])

    def commit_split(self, split: str, index: SplitIndex, failures: list[dict[str, str]], **kw: Any) -> bool:
        """Whether any set changed (a no-op rerun writes nothing)."""
        return any([w.commit_split(split, index, failures, **kw) for w in self.writers.values()])

    def commit_part(self, split: str, index: SplitIndex, failures: list[dict[str, str]], **kw: Any) -> str:
        return [w.commit_part(split, index, failures, **kw) for w in self.writers.values()][0]

    def record_run(self, info: dict[str, Any]) -> None:
        for w in self.writers.values():
            w.record_run(info)
