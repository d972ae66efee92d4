"""Every registry entry resolves to a spec and a working preprocessing, without weights or network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from corpus import draw_sketch
from featstore.encoders import get_spec, list_specs
from featstore.encoders.preprocess import Preprocess
from featstore.encoders.registry import backend_for, registered_names
from featstore.errors import UnknownEncoderError, WeightsError
from featstore.extract import ExtractOptions, extract
from featstore.store import feature_key

EXPECTED = {"eva_giant_336": (1408, (336, 336), "squash"), "clip_vit_l14": (768, (224, 224), "center"),
            "clip_vit_l14_336": (768, (336, 336), "center"), "dinov2_s14": (384, (224, 224), "center"),
            "dinov2_b14": (768, (224, 224), "center"), "dinov2_l14": (1024, (224, 224), "center"),
            "dinov2_g14": (1536, (224, 224), "center"), "pixels": (1024, (32, 32), "squash")}


def test_catalog_has_the_promised_entries() -> None:
    assert set(EXPECTED) <= set(registered_names())


@pytest.mark.parametrize("name", registered_names() + ["timm:resnet18.a1_in1k", "open_clip:ViT-B-32:openai"])
def test_entry_builds_spec_and_preprocessing(name: str) -> None:
    spec = get_spec(name)
    pre = Preprocess.from_transform(backend_for(spec).transform(spec), channels=spec.channels)
    x = pre(draw_sketch((300, 200), 0))
    assert x.shape == (spec.channels, *spec.input_size) and x.dtype == torch.float32
    if name in EXPECTED:
        assert (spec.dim, spec.input_size, spec.crop_mode) == EXPECTED[name]
    assert feature_key({"encoder": spec.key_fields()})  # plain data: hashable into a key


def test_clip_entries_use_clip_statistics_and_quickgelu() -> None:
    spec = get_spec("clip_vit_l14")
    assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert dict(spec.extra)["quick_gelu"] is True and spec.pooling == "encode_image"
    assert get_spec("dinov2_b14").note  # a deliberate override says why


def test_unknown_names_list_the_options() -> None:
    with pytest.raises(UnknownEncoderError, match="known: .*eva_giant_336"):
        get_spec("evaclip")
    with pytest.raises(UnknownEncoderError, match="timm has no model"):
        get_spec("timm:not_a_model_xyz")
    with pytest.raises(UnknownEncoderError, match="no pretrained tag"):
        get_spec("open_clip:ViT-B-32:nope")


def test_filter_by_glob() -> None:
    assert [s.name for s in list_specs("clip_vit*")] == ["clip_vit_l14", "clip_vit_l14_336"]
    assert {"eva02_clip_l14", "eva01_clip_g14", "laion_vit_h14"} <= {s.name for s in list_specs("*") if s.text}


def _tiny_data(root: Path) -> Path:
    (root / "train_images" / "a").mkdir(parents=True)
    draw_sketch((40, 40), 0).save(root / "train_images" / "a" / "x.png")
    return root


def test_missing_weights_offline_fails_fast_naming_both_ways(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"--weights FILE.*HF_HUB_OFFLINE=1"):
        extract(model="eva_giant_336", data=_tiny_data(tmp_path / "d"), cache=tmp_path / "c",
                options=ExtractOptions(device="cpu"))
    assert not (tmp_path / "c").exists()  # nothing half-created


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"not a checkpoint", "cannot read|do not load")])
def test_bad_weights_files(tmp_path: Path, content: bytes, match: str) -> None:
    w = tmp_path / "w.pth"
    w.write_bytes(content)
    with pytest.raises(WeightsError, match=match):
        extract(model="timm:vit_tiny_patch16_224", data=_tiny_data(tmp_path / "d"), cache=tmp_path / "c",
                weights=w, options=ExtractOptions(device="cpu"))


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    import timm

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    w = tmp_path / "evil.pth"
    sd = timm.create_model("vit_tiny_patch16_224").state_dict()
    torch.save({"state_dict": sd, "extra": Evil()}, w)
    with pytest.raises(WeightsError, match="weights-only|refusing"):
        extract(model="timm:vit_tiny_patch16_224", data=_tiny_data(tmp_path / "d"), cache=tmp_path / "c",
                weights=w, options=ExtractOptions(device="cpu"))


def test_wrong_architecture_weights(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    w = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("resnet18").state_dict(), str(w))
    with pytest.raises(WeightsError, match="do not load into timm vit_tiny"):
        extract(model="timm:vit_tiny_patch16_224", data=_tiny_data(tmp_path / "d"), cache=tmp_path / "c",
                weights=w, options=ExtractOptions(device="cpu"))
