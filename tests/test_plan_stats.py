"""Which images are stored already: the stats behind it taken by the scan's threads, errors per image."""

from __future__ import annotations

import os

import pytest

import featstore.plan as plan_mod
from featstore.extract import extract
from featstore.setdef import define_set
from featstore.store import FeatureSetWriter


def _items_and_writer(tmp_path):
    from corpus import write_folder_dataset

    root = write_folder_dataset(tmp_path / "data", per_class=3, test=2)
    extract(model="pixels", data=root, cache=tmp_path / "cache")
    fs = define_set(model="pixels", data=root, cache=tmp_path / "cache", weights=None, random_weights=False,
                    splits=None, name=None, precision="fp32")
    return fs


@pytest.mark.parametrize("threads", ["1", "4"])
def test_plan_is_the_same_with_threads_and_names_a_vanished_file(tmp_path, monkeypatch, threads):
    monkeypatch.setenv("FEATSTORE_SCAN_THREADS", threads)
    fs = _items_and_writer(tmp_path)
    items = list(fs.dataset.splits["train"])
    gone = items[1]
    os.remove(gone.file)  # vanished between the scan and the plan
    with FeatureSetWriter(fs.folder, key=fs.key, key_fields=fs.fields, header=fs.header) as writer:
        done, todo, stats, failures = plan_mod.plan(writer, "train", items)
    assert set(done) == {i.id for i in items} - {gone.id} and not todo
    assert failures == {gone.id: "cannot read file: No such file or directory"}
    st = os.stat(items[0].file)
    assert stats[items[0].id] == (st.st_size, st.st_mtime_ns)
