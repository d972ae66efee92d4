"""Stored vectors equal what timm / open_clip compute with their own preprocessing (fp16 tolerance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config

from featstore.extract import ExtractOptions, extract
from featstore.images import decode_image
from featstore.store import open_feature_set
from corpus import draw_sketch

OPTS = ExtractOptions(device="cpu", batch_size=3, workers=0)


def _dataset(root: Path) -> Path:
    """Grayscale PNG and JPEG sketches, a colour photo-like image, an RGBA sketch and its flattened twin."""
    d = root / "train_images" / "thing"
    d.mkdir(parents=True)
    draw_sketch((96, 80), 1).save(d / "gray.png")
    draw_sketch((120, 120), 2).save(d / "gray.jpg", quality=90)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 100, 3), dtype=np.uint8)).save(d / "colour.png")
    rgba = draw_sketch((90, 90), 3, mode="RGBA")
    rgba.save(d / "alpha.png")
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, mask=rgba.getchannel("A"))
    white.save(d / "alpha_flat.png")
    return root


def _stored(cache: Path, ref: str) -> dict[str, np.ndarray]:
    data = open_feature_set(ref, cache=cache).load("train")
    return {i: f for i, f in zip(data.ids, data.features)}


def _reference(model: torch.nn.Module, transform, root: Path) -> dict[str, np.ndarray]:
    """The library's own path: decoded image -> RGB -> its eval transform -> forward in fp32."""
    out = {}
    for p in sorted((root / "train_images" / "thing").iterdir()):
        x = transform(decode_image(p).convert("RGB"))[None]
        with torch.no_grad():
            out[f"thing/{p.name}"] = model(x)[0].numpy()
    return out


def _assert_close(stored: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    assert sorted(stored) == sorted(ref)
    for k in ref:
        scale = np.abs(ref[k]).max()
        np.testing.assert_allclose(stored[k].astype(np.float32), ref[k], rtol=2e-3, atol=2e-3 * scale, err_msg=k)
    np.testing.assert_allclose(stored["thing/alpha.png"], stored["thing/alpha_flat.png"], atol=1e-6)


def test_timm_vit_with_classifier_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    full = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=7)  # a full checkpoint, head included
    wfile = tmp_path / "vit_tiny.safetensors"
    save_file(full.state_dict(), str(wfile))
    root = _dataset(tmp_path / "data")
    extract(model="timm:vit_tiny_patch16_224", data=root, cache=tmp_path / "cache", weights=wfile, options=OPTS)

    ref_model = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={"file": str(wfile)}).eval()
    transform = create_transform(**resolve_data_config({}, model=ref_model), is_training=False)
    _assert_close(_stored(tmp_path / "cache", "timm:vit_tiny_patch16_224"), _reference(ref_model, transform, root))


def test_dinov2_entry_loads_518_checkpoint_at_224(tmp_path: Path) -> None:
    torch.manual_seed(2)
    orig = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)  # 518 px pos-embed
    wfile = tmp_path / "dinov2_s.pth"
    torch.save(orig.state_dict(), wfile)
    root = _dataset(tmp_path / "data")
    extract(model="dinov2_s14", data=root, cache=tmp_path / "cache", weights=wfile, options=OPTS)

    ref_model = timm.create_model("vit_small_patch14_dinov2.lvd142m", pretrained=True, num_classes=0, img_size=224,
                                  pretrained_cfg_overlay={"file": str(wfile)}).eval()
    cfg = resolve_data_config({"input_size": (3, 224, 224), "crop_pct": 0.875}, model=ref_model)
    assert cfg["crop_mode"] == "center" and cfg["mean"] == (0.485, 0.456, 0.406)
    _assert_close(_stored(tmp_path / "cache", "dinov2_s14"), _reference(ref_model, create_transform(**cfg), root))


@pytest.fixture()
def tiny_clip_arch(tmp_path: Path) -> str:
    """A two-layer open_clip ViT registered as a model config, the way open_clip adds custom models."""
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path / "TinyViT-test.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "TinyViT-test"


def test_open_clip_encode_image(tmp_path: Path, tiny_clip_arch: str) -> None:
    torch.manual_seed(3)
    model = open_clip.create_model(tiny_clip_arch, pretrained=None)
    wfile = tmp_path / "tiny_clip.pt"
    torch.save(model.state_dict(), wfile)
    root = _dataset(tmp_path / "data")
    extract(model=f"open_clip:{tiny_clip_arch}", data=root, cache=tmp_path / "cache", weights=wfile, options=OPTS)

    ref, _, preprocess = open_clip.create_model_and_transforms(tiny_clip_arch, pretrained=str(wfile))
    ref.eval()
    _assert_close(_stored(tmp_path / "cache", f"open_clip:{tiny_clip_arch}"),
                  _reference(lambda x: ref.encode_image(x), preprocess, root))


def test_gray_fast_path_equals_rgb_conversion() -> None:
    """A grayscale source resized as one channel and replicated == converting to RGB first."""
    from featstore.encoders import create_encoder

    _, pre = create_encoder("timm:vit_tiny_patch16_224", random_weights=True)
    img = draw_sketch((333, 251), 5)
    lib = create_transform(**resolve_data_config({}, model=timm.create_model("vit_tiny_patch16_224")), is_training=False)
    assert torch.equal(pre(img), lib(img.convert("RGB")))
