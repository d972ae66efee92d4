"""A copied or moved dataset folder is not re-embedded (issue 12): vectors are reused by content hash across sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from corpus import draw_sketch, write_folder_dataset
from featstore.extract import ExtractOptions, extract
from featstore.store import list_feature_sets

OPTS = ExtractOptions(device="cpu", batch_size=2, workers=0, shard_rows=4)


def test_a_copied_folder_reuses_every_vector_and_computes_only_changed_images(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", classes=("owl", "cat"), per_class=3)
    cache = tmp_path / "cache"
    extract(model="pixels", data=root, cache=cache, options=OPTS)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    changed = next((copy / "train_images" / "owl").iterdir())
    draw_sketch(seed=77).save(changed)  # one image differs in the copy
    rep = extract(model="pixels", data=copy, cache=cache, options=OPTS)
    assert sum(r.extracted for r in rep.splits) == 1
    assert sum(r.reused for r in rep.splits) == sum(r.images for r in rep.splits) - 1
    a, b = sorted(list_feature_sets(cache), key=lambda s: s.dataset["root"] != str(root))
    assert a.key != b.key and b.dataset["root"] == str(copy)
    for split in a.splits:
        x, y = a.load(split), b.load(split)
        assert list(x.ids) == list(y.ids)
        same = [i for i, row in enumerate(x.ids) if not (split == "train" and row == f"owl/{changed.name}")]
        np.testing.assert_array_equal(x.features[same], y.features[same])
        assert len(same) == len(x.ids) - (split == "train")
