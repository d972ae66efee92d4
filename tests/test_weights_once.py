"""Weights are hashed once per file (by path, size, mtime) and a safetensors file is not read to be checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from featstore.encoders import weights
from featstore.errors import WeightsError


def test_weights_are_hashed_once_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATSTORE_HASH_CACHE", str(tmp_path / "hashes.json"))
    w = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(3)}, str(w))
    calls: list[Path] = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or real(p))
    first = weights.file_identity(w)
    assert weights.file_identity(w) == first and len(calls) == 1  # second run: from the cache
    save_file({"a": torch.zeros(3)}, str(w))
    os.utime(w, ns=(1, 1))  # changed bytes (and mtime): hashed again
    assert weights.file_identity(w) != first and len(calls) == 2


def test_unwritable_hash_cache_still_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("FEATSTORE_HASH_CACHE", str(tmp_path / "file" / "hashes.json"))  # parent is a file
    w = tmp_path / "w.pt"
    torch.save({"a": torch.ones(2)}, w)
    assert weights.file_identity(w) == weights.file_identity(w) == f"sha256:{weights.sha256_file(w)[7:]}"


def test_safetensors_validation_reads_the_header_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(3)}, str(w))
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("tensors read to validate"))
    assert weights.validate_weights_file(w) == w.resolve()
    w.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage!garbage!")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        weights.validate_weights_file(w)
