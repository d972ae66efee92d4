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


def _count_reads(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[object]:
    """Calls that read a file's tensors (a memory-mapped validation reads none)."""
    calls: list[object] = []
    real = getattr(owner, name)

    def counted(*a: object, **k: object) -> object:
        if not k.get("mmap"):
            calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _linear_inits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The device of every nn.Linear weight when it is initialised: 'meta' costs nothing."""
    devices: list[str] = []
    real = torch.nn.Linear.reset_parameters
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", lambda self: devices.append(self.weight.device.type) or real(self))
    return devices


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_timm_weights_file_is_loaded_once_into_a_model_never_initialised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    import safetensors.torch
    import timm

    from featstore.encoders import create_encoder

    torch.manual_seed(1)
    src = timm.create_model("vit_tiny_patch16_224", num_classes=5)  # a checkpoint with a classifier to drop
    w = tmp_path / "w.safetensors"
    save_file({k: v.to(dtype) for k, v in src.state_dict().items()}, str(w))
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0,
                            pretrained_cfg_overlay={"file": str(w)}).eval()  # the library's plain path
    loads = _count_reads(monkeypatch, safetensors.torch, "load_file")
    inits = _linear_inits(monkeypatch)
    model, _ = create_encoder("timm:vit_tiny_patch16_224", weights=w)
    assert len(loads) == 1 and inits and set(inits) == {"meta"}
    got, want = model.state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    for k, v in want.items():  # fp16 files are cast to the model's fp32, as a copy into the model would
        assert got[k].dtype == v.dtype and got[k].is_contiguous() and torch.equal(got[k], v), k
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_open_clip_weights_file_is_loaded_once_into_a_model_never_initialised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import open_clip

    from featstore.encoders import create_encoder

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "TinyLoad-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "TinyLoad-test.json")
    torch.manual_seed(3)
    w = tmp_path / "clip.pt"
    torch.save(open_clip.create_model("TinyLoad-test", pretrained=None).state_dict(), w)
    ref = open_clip.create_model("TinyLoad-test", pretrained=str(w)).eval().requires_grad_(False)  # same MHA path
    loads = _count_reads(monkeypatch, torch, "load")
    inits = _linear_inits(monkeypatch)
    model, _ = create_encoder("open_clip:TinyLoad-test", weights=w)
    assert len(loads) == 1 and inits and set(inits) == {"meta"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref.encode_image(x))
    truncated = tmp_path / "truncated.pt"
    state = ref.state_dict()
    state.pop("visual.proj")
    torch.save(state, truncated)
    with pytest.raises(WeightsError, match="truncated.pt"):
        create_encoder("open_clip:TinyLoad-test", weights=truncated)


def test_a_checkpoint_missing_a_tensor_is_refused_not_left_on_meta(tmp_path: Path) -> None:
    import timm

    from featstore.encoders import create_encoder

    state = timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict()
    state.pop("blocks.0.mlp.fc1.weight")
    w = tmp_path / "partial.safetensors"
    save_file(state, str(w))
    with pytest.raises(WeightsError, match="blocks.0.mlp.fc1.weight"):
        create_encoder("timm:vit_tiny_patch16_224", weights=w)


def test_a_load_that_leaves_parameters_on_meta_falls_back_to_the_plain_path() -> None:
    import types

    from featstore.encoders.lazyinit import build_then_load

    def build_with(state: dict[str, torch.Tensor]) -> torch.nn.Module | None:
        lib = types.SimpleNamespace(load=lambda model, sd: model.load_state_dict(sd, strict=False))

        def build() -> torch.nn.Module:
            model = torch.nn.Linear(2, 3)
            lib.load(model, state)  # looked up on lib at call time, as the libraries do
            return model
        return build_then_load(build, library=lib, loader="load")  # type: ignore[arg-type]

    w, b = torch.arange(6.0).reshape(3, 2), torch.ones(3, dtype=torch.float16)
    assert build_with({"weight": w}) is None  # the bias was never loaded: not a model to use
    model = build_with({"weight": w, "bias": b})
    assert model is not None and torch.equal(model.weight, w) and model.bias.dtype == torch.float32
    assert torch.equal(model.bias, torch.ones(3)) and isinstance(model.weight, torch.nn.Parameter)
