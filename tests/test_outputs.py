"""Every output and view equals the library's own computation on the same input; default keys never move."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from featstore.encoders import create_encoder, get_spec
from featstore.encoders.registry import backend_for
from featstore.errors import ExtractionError, StoreError
from featstore.extract import ExtractOptions, define_set, extract
from featstore.images import decode_image
from featstore.store import open_feature_set
from featstore.store.catalog import set_name, view_sets
from corpus import draw_sketch

OPTS = ExtractOptions(device="cpu", batch_size=2, workers=0)


def _data(root: Path, n: int = 2) -> Path:
    d = root / "train_images" / "thing"
    d.mkdir(parents=True)
    for k in range(n):
        draw_sketch((90 + 10 * k, 80), k).save(d / f"s{k}.png")
    return root


def _inputs(spec_name: str, root: Path) -> dict[str, torch.Tensor]:
    """The library's own eval transform on each decoded image (RGB)."""
    spec = get_spec(spec_name)
    transform = backend_for(spec).transform(spec)
    return {f"thing/{p.name}": transform(decode_image(p).convert("RGB"))[None]
            for p in sorted((root / "train_images" / "thing").iterdir())}


def _check(cache: Path, ref: str, expected: dict[str, np.ndarray]) -> None:
    data = open_feature_set(ref, cache=cache).load("train")
    assert sorted(data.ids) == sorted(expected)
    for i, f in zip(data.ids, data.features):
        scale = np.abs(expected[i]).max()
        np.testing.assert_allclose(f, expected[i], rtol=2e-3, atol=3e-3 * scale, err_msg=f"{ref} {i}")


def _timm_reference(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each output through timm's public API, independently of featstore.encoders.outputs."""
    feats = model.forward_features(x)
    inter = model.forward_intermediates(x, indices=4, return_prefix_tokens=True, norm=True, intermediates_only=True)
    return {"pre_logits": model(x), "cls": feats[:, 0], "patch_mean": feats[:, model.num_prefix_tokens:].mean(1),
            "cls_last4": torch.cat([prefix[:, 0] for _, prefix in inter], dim=1)}


@pytest.mark.parametrize("arch, views", [("vit_tiny_patch16_224", ["orig", "hflip"]),
                                         ("eva02_tiny_patch14_224", ["orig"])])  # Eva: eva_giant_336's family
def test_timm_outputs_and_hflip_equal_timm(tmp_path: Path, arch: str, views: list[str]) -> None:
    name = f"timm:{arch}"
    root, cache = _data(tmp_path / "data"), tmp_path / "cache"
    outputs = ["pre_logits", "cls", "patch_mean", "cls_last4"]
    report = extract(model=name, data=root, cache=cache, random_weights=True, options=OPTS, outputs=outputs,
                     views=views)
    assert len({k for *_, k in report.sets}) == len(outputs) * len(views)
    model, _ = create_encoder(name, random_weights=True)  # the same seeded random model
    inputs = _inputs(name, root)
    x = torch.cat(list(inputs.values()))
    expected: dict[str, dict[str, np.ndarray]] = {}
    with torch.no_grad():
        for view, xv in (("", x), ("@hflip", torch.flip(x, dims=(-1,))))[:len(views)]:
            for out, v in _timm_reference(model, xv).items():
                expected[f"{name}:{out}{view}"] = dict(zip(inputs, v.numpy()))
    for ref, exp in expected.items():
        _check(cache, ref, exp)
    _check(cache, name, expected[f"{name}:pre_logits"])  # the plain name is the default output's original view
    assert open_feature_set(f"{name}:cls_last4", cache=cache).dim == 4 * model.embed_dim


@pytest.fixture()
def tiny_clip(tmp_path: Path) -> str:
    """A two-layer open_clip ViT with the real tokenizer's vocabulary (so text can be embedded too)."""
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path / "TinyClip-out.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "TinyClip-out"


def test_open_clip_pre_and_post_projection_equal_open_clip(tmp_path: Path, tiny_clip: str) -> None:
    name = f"open_clip:{tiny_clip}"
    assert get_spec(name).output_dims() == {"embed": 32, "pre_proj": 64}
    root, cache = _data(tmp_path / "data"), tmp_path / "cache"
    extract(model=name, data=root, cache=cache, random_weights=True, options=OPTS, outputs=["embed", "pre_proj"],
            views=["orig", "hflip"])
    torch.manual_seed(0)
    model = open_clip.create_model(tiny_clip, pretrained=None).eval()
    v = model.visual
    expected: dict[str, dict[str, np.ndarray]] = {}
    with torch.no_grad():
        for i, x in _inputs(name, root).items():
            for view, xv in (("", x), ("@hflip", torch.flip(x, dims=(-1,)))):
                pooled, _ = v._pool(v.transformer(v._embeds(xv)))  # open_clip's own steps before `@ proj`
                embed = model.encode_image(xv)
                torch.testing.assert_close(pooled @ v.proj, embed)
                expected.setdefault(f"{name}:pre_proj{view}", {})[i] = pooled[0].numpy()
                expected.setdefault(f"{name}:embed{view}", {})[i] = embed[0].numpy()
    for ref, exp in expected.items():
        _check(cache, ref, exp)
    _check(cache, name, expected[f"{name}:embed"])


def test_default_output_and_view_keep_the_keys_of_existing_stores(tmp_path: Path) -> None:
    """Keys computed by the code before outputs and views existed (same fields, same hash)."""
    d = tmp_path / "d" / "train" / "a"
    d.mkdir(parents=True)
    draw_sketch((20, 20), 0).save(d / "x.png")
    before = {"pixels": "5de93d5712d8d605", "timm:vit_tiny_patch16_224": "d7b8388aa57eb1cb",
              "clip_vit_l14": "c37ba1cb1bab165c", "eva_giant_336": "4bf2e6b98ab24731"}
    for model, key in before.items():
        fs = define_set(model=model, data=tmp_path / "d", cache=tmp_path / "c", weights=None, random_weights=True,
                        splits=None, name="demo", precision="fp32")
        assert fs.key == key, model


def test_unknown_output_or_view_lists_the_options(tmp_path: Path) -> None:
    root = _data(tmp_path / "data", n=1)
    with pytest.raises(ExtractionError, match="available: flatten"):
        extract(model="pixels", data=root, cache=tmp_path / "c", options=OPTS, outputs=["cls"])
    with pytest.raises(ExtractionError, match="known: orig, hflip"):
        extract(model="pixels", data=root, cache=tmp_path / "c", options=OPTS, views=["vflip"])


def test_an_output_added_later_extends_the_store_without_touching_the_others(tmp_path: Path, tiny_clip: str) -> None:
    root, cache = _data(tmp_path / "data"), tmp_path / "cache"
    name = f"open_clip:{tiny_clip}"
    first = extract(model=name, data=root, cache=cache, random_weights=True, options=OPTS)
    shards = sorted(p.name for p in first.folder.glob("*.h5"))
    second = extract(model=name, data=root, cache=cache, random_weights=True, options=OPTS,
                     outputs=["embed", "pre_proj"])
    assert second.key == first.key and sorted(p.name for p in first.folder.glob("*.h5")) == shards
    assert second.splits[0].extracted == 2  # computed for the new set, appended to it only
    assert open_feature_set(f"{name}:pre_proj", cache=cache).count("train") == 2
    third = extract(model=name, data=root, cache=cache, random_weights=True, options=OPTS,
                    outputs=["embed", "pre_proj"])
    assert third.splits[0].extracted == 0 and third.splits[0].reused == 2
    with pytest.raises(StoreError, match="no feature set"):
        open_feature_set(f"{name}@hflip", cache=cache)


def test_cli_outputs_views_through_shards_and_merge(tmp_path: Path, tiny_clip: str) -> None:
    """--shard workers fill every (output, view) set; merge assembles each; ls names them ENCODER:OUTPUT@VIEW."""
    from typer.testing import CliRunner

    from featstore.cli import featstore_app

    runner = CliRunner()
    root, cache = _data(tmp_path / "data", n=3), tmp_path / "cache"
    common = ["--model", f"open_clip:{tiny_clip}", "--data", str(root), "--cache", str(cache), "--random-weights",
              "--outputs", "embed,pre_proj", "--views", "orig,hflip"]
    for i in range(2):
        res = runner.invoke(featstore_app, ["extract", *common, "--device", "cpu", "--shard", f"{i}/2"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(featstore_app, ["merge", *common])
    assert res.exit_code == 0, res.output
    for suffix in ("", ":pre_proj", "@hflip", ":pre_proj@hflip"):
        fs = open_feature_set(f"open_clip:{tiny_clip}{suffix}", cache=cache)
        assert fs.count("train") == 3 and set_name(fs) == f"open_clip:{tiny_clip}{suffix}"  # what `ls` shows
    views = view_sets(open_feature_set(f"open_clip:{tiny_clip}:pre_proj", cache=cache), cache=cache)
    assert sorted(views) == ["hflip", "orig"] and set_name(views["hflip"]) == f"open_clip:{tiny_clip}:pre_proj@hflip"
    res = runner.invoke(featstore_app, ["extract", *common[:-4], "--device", "cpu", "--outputs", "cls"])
    assert res.exit_code == 1 and "available: embed, pre_proj" in res.output


@pytest.mark.parametrize("proj", [None, "linear"])  # None: EVA-CLIP's configs (the trunk's classifier projects)
def test_open_clip_timm_tower_pre_and_post_projection(tmp_path: Path, proj: str | None) -> None:
    arch = f"TinyTimmClip-{proj}"
    cfg = {"embed_dim": 24, "vision_cfg": {"image_size": 224, "timm_model_name": "vit_tiny_patch16_224",
                                           "timm_model_pretrained": False, "timm_pool": "token", "timm_proj": proj},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / f"{arch}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    name = f"open_clip:{arch}"
    assert get_spec(name).output_dims() == {"embed": 24, "pre_proj": 192}
    model, _ = create_encoder(name, random_weights=True, outputs=("embed", "pre_proj"))
    torch.manual_seed(0)
    ref = open_clip.create_model(arch, pretrained=None).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        got = model(x)
        trunk = ref.visual.trunk
        pre = trunk.forward_head(trunk.forward_features(x), pre_logits=True)  # timm's pooled, pre-classifier token
        torch.testing.assert_close(got["embed"], ref.encode_image(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got["pre_proj"], pre, rtol=1e-4, atol=1e-5)
