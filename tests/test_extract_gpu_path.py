"""The CUDA path's failure modes, provoked on CPU: out of memory, TF32 in fp32, cuda:N under torchrun, /dev/shm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corpus import write_folder_dataset
from featstore import loader
from featstore.distributed import Rank, bind_device
from featstore.encoders import get_spec, register_encoder
from featstore.encoders.pixels import PixelsBackend, pixels_spec
from featstore.encoders.registry import register_backend
from featstore.errors import ExtractionError
from featstore.extract import ExtractOptions, extract, feature_set_fields
from featstore.store import open_feature_set

OPTS = ExtractOptions(device="cpu", batch_size=8, workers=0, shard_rows=64)
SEEN: dict[str, list] = {"batch": [], "tf32": []}


class _Fussy(torch.nn.Module):
    """Pixels, but out of memory above 2 images, and it records the TF32 flags it ran under."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN["batch"].append(len(x))
        SEEN["tf32"].append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        if len(x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return x.flatten(1)


class _FussyBackend(PixelsBackend):
    prefix = "fussy-test"

    def build(self, spec, *, weights, random_weights):
        return _Fussy()


register_backend(_FussyBackend())
register_encoder("fussy_test")(lambda: pixels_spec("fussy_test").__class__(
    **{**pixels_spec("fussy_test").__dict__, "backend": "fussy-test"}))


def test_out_of_memory_halves_the_batch_says_so_once_and_stores_the_same_vectors(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=4, test=0)
    SEEN["batch"].clear()
    rep = extract(model="fussy_test", data=root, cache=tmp_path / "cache", options=OPTS)
    assert rep.batch_size == 2 and not rep.failures
    assert [n for n in rep.notes if "out of memory" in n] == [
        "out of memory at batch size 8: backed off to 2 (use --batch-size 2 next time)"]
    assert SEEN["batch"][:3] == [8, 4, 2] and set(SEEN["batch"][3:]) <= {1, 2}  # halved once, then kept
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    for split in ("train", "val"):
        a = open_feature_set("fussy_test", cache=tmp_path / "cache").load(split)
        b = open_feature_set("pixels", cache=tmp_path / "cache").load(split)
        assert list(a.ids) == list(b.ids)
        np.testing.assert_array_equal(a.features, b.features)


def test_fp32_runs_without_tf32_and_restores_the_flags(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=1, test=0)
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True  # cuDNN's default
    try:
        SEEN["tf32"].clear()
        extract(model="fussy_test", data=root, cache=tmp_path / "cache",
                options=ExtractOptions(device="cpu", batch_size=2, workers=0, precision="fp32"))
        assert SEEN["tf32"] and set(SEEN["tf32"]) == {(False, False)}
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_explicit_gpu_under_torchrun_is_refused_with_the_reason() -> None:
    with pytest.raises(ExtractionError, match="every rank would use that one GPU"):
        bind_device(Rank(1, 2, torchrun=True), "cuda:1")
    assert bind_device(Rank(1, 2), "cpu") == "cpu"  # --shard workers choose their device freely


def test_compile_is_part_of_the_key_only_when_on() -> None:
    spec = get_spec("pixels")
    plain = feature_set_fields(spec, weights="w", precision="fp16", views=1, dataset="d")
    assert "compile" not in plain  # existing sets keep their keys
    assert feature_set_fields(spec, weights="w", precision="fp16", views=1, dataset="d", compile=True) == {
        **plain, "compile": True}


def test_retry_precision_must_be_wider(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=1, test=0)
    with pytest.raises(ExtractionError, match="retry at a wider precision"):
        extract(model="pixels", data=root, cache=tmp_path / "cache",
                options=ExtractOptions(device="cpu", workers=0, retry_precision="fp16"))


def test_prefetch_is_sized_to_the_batch() -> None:
    small = 64 * 1 * 32 * 32
    eva = 64 * 3 * 336 * 336  # 21.7 MB per batch of 64
    assert loader.prefetch_factor(small, 8) == 4
    assert loader.prefetch_factor(eva, 8) == 3
    assert loader.prefetch_factor(eva * 8, 8) == 1  # batch 512: one ahead per worker, never zero


def test_small_dev_shm_switches_to_file_system_sharing_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.multiprocessing.get_sharing_strategy()
    monkeypatch.setattr(loader.shutil, "disk_usage", lambda p: type("U", (), {"free": 64 << 20})())
    said: list[str] = []
    try:
        torch.multiprocessing.set_sharing_strategy("file_descriptor")
        loader._fit_shared_memory(400 << 20, said.append)
        assert torch.multiprocessing.get_sharing_strategy() == "file_system"
        assert len(said) == 1 and "64 MiB free" in said[0] and "--shm-size" in said[0]
        loader._fit_shared_memory(400 << 20, said.append)
        assert len(said) == 1  # said once
        torch.multiprocessing.set_sharing_strategy("file_descriptor")
        loader._fit_shared_memory(10 << 20, said.append)  # enough room: nothing changes
        assert torch.multiprocessing.get_sharing_strategy() == "file_descriptor" and len(said) == 1
    finally:
        torch.multiprocessing.set_sharing_strategy(before)
