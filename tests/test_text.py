"""Text sets equal open_clip's encode_text and zero-shot classifier; import, lookup, provenance warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip import OPENAI_IMAGENET_TEMPLATES
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from typer.testing import CliRunner

from featstore.cli import featstore_app
from probes.cli import probes_app
from featstore.classnames import readable_names
from featstore.errors import FeatstoreError, StoreError
from featstore.extract import ExtractOptions, extract
from featstore.provenance import label_leak_warning
from featstore.store.textset import load_text_set, write_text_set
from featstore.text import embed_class_names
from corpus import draw_sketch

runner = CliRunner()
FOLDERS = ["hot_dog", "n01440764", "n01443537"]  # sorted: the dataset's class order


@pytest.fixture()
def tiny_clip(tmp_path: Path) -> str:
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path / "TinyClip-text.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "TinyClip-text"


def _data(root: Path, folders: list[str] = FOLDERS) -> Path:
    for k, c in enumerate(folders):
        (root / "train" / c).mkdir(parents=True)
        draw_sketch((40, 40), k).save(root / "train" / c / "a.png")
    return root


def test_wordnet_folders_become_readable_names_and_a_file_overrides() -> None:
    assert readable_names(FOLDERS) == ["hot dog", "tench", "goldfish"]
    assert readable_names(["n00004475"]) == ["organism"]  # not in ImageNet-1k: timm's 22k synset lemma
    assert readable_names(FOLDERS, overrides={"n01440764": "tinca"})[1] == "tinca"


def test_text_set_equals_open_clip_encode_text_and_zero_shot_classifier(tmp_path: Path, tiny_clip: str) -> None:
    names_file = tmp_path / "names.txt"
    names_file.write_text("n01443537, golden fish\n")
    ts = embed_class_names(model=f"open_clip:{tiny_clip}", data=_data(tmp_path / "d"), names_file=names_file,
                           cache=tmp_path / "cache", random_weights=True, device="cpu")
    names = ["hot dog", "tench", "golden fish"]
    assert ts.classes == FOLDERS and ts.names == names and len(ts.templates) == 80
    assert ts.embeddings.shape == (3, 80, 32) and ts.embeddings.dtype == np.float32

    torch.manual_seed(0)  # the backend's seeded random model
    model = open_clip.create_model(tiny_clip, pretrained=None).eval()
    tokenizer = open_clip.get_tokenizer(tiny_clip)
    with torch.no_grad():
        one = model.encode_text(tokenizer([OPENAI_IMAGENET_TEMPLATES[5](names[2])]), normalize=True)[0]
        zs = build_zero_shot_classifier(model, tokenizer, names, OPENAI_IMAGENET_TEMPLATES, device="cpu")
    np.testing.assert_allclose(ts.embeddings[2, 5], one.numpy(), atol=1e-5)
    np.testing.assert_allclose(ts.classifier(), zs.T.numpy(), atol=1e-5)
    assert ts.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))
    assert load_text_set(f"open_clip:{tiny_clip}", cache=tmp_path / "cache").key == ts.key


def test_cli_text_ls_import_and_lookup_errors(tmp_path: Path, tiny_clip: str) -> None:
    cache = tmp_path / "cache"
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n")
    res = runner.invoke(featstore_app, ["text", "--model", f"open_clip:{tiny_clip}", "--classes", str(classes),
                                        "--templates", "simple", "--random-weights", "--device", "cpu",
                                        "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    assert "2 classes x 7 templates" in res.output
    npz = tmp_path / "t.npz"
    np.savez(npz, classes=np.array(["cat", "dog"]), embeddings=np.random.default_rng(0).normal(size=(2, 8)))
    res = runner.invoke(featstore_app, ["import", "mytext", "--text", str(npz), "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    imported = load_text_set("mytext", cache=cache)
    assert imported.embeddings.shape == (2, 1, 8) and imported.logit_scale == 100.0
    np.testing.assert_allclose(np.linalg.norm(imported.embeddings, axis=-1), 1.0, rtol=1e-6)
    res = runner.invoke(featstore_app, ["ls", "--cache", str(cache)])
    assert res.exit_code == 0 and "text sets" in res.output and "mytext" in res.output
    with pytest.raises(StoreError, match="no text set 'nope'.*known: "):
        load_text_set("nope", cache=cache)
    write_text_set(cache, encoder="mytext", key_fields={"other": 1}, classes=["a"], templates=["{}"],
                   embeddings=np.ones((1, 4)), logit_scale=50.0)
    with pytest.raises(StoreError, match="names 2 text sets"):
        load_text_set("mytext", cache=cache)
    res = runner.invoke(featstore_app, ["text", "--model", "pixels", "--classes", str(classes), "--cache", str(cache)])
    assert res.exit_code == 1 and "no text tower" in res.output and "eva02_clip_l14" in res.output


def test_bad_template_file_and_name_count(tmp_path: Path, tiny_clip: str) -> None:
    bad = tmp_path / "t.txt"
    bad.write_text("a photo\n")
    with pytest.raises(FeatstoreError, match="exactly one"):
        embed_class_names(model=f"open_clip:{tiny_clip}", data=_data(tmp_path / "d"), templates=bad,
                          random_weights=True, cache=tmp_path / "c")
    names = tmp_path / "n.txt"
    names.write_text("one name\n")
    with pytest.raises(FeatstoreError, match="1 names for 3 classes"):
        embed_class_names(model=f"open_clip:{tiny_clip}", data=tmp_path / "d", names_file=names,
                          random_weights=True, cache=tmp_path / "c")


def test_label_leak_is_flagged_by_info(tmp_path: Path) -> None:
    assert "ImageNet-1k labels" in label_leak_warning("eva_giant_336", FOLDERS)
    assert label_leak_warning("clip_vit_l14", FOLDERS) is None  # contrastive only
    assert label_leak_warning("eva_giant_336", ["cat_sketch", "dog_sketch"]) is None  # not ImageNet classes
    root, cache = tmp_path / "d", tmp_path / "cache"
    for split, n in (("train", 2), ("val", 1)):
        for k, c in enumerate(FOLDERS):
            (root / split / c).mkdir(parents=True)
            for j in range(n):
                draw_sketch((40, 40), 10 * k + j + 5 * n).save(root / split / c / f"{j}.png")
    model = "timm:resnet18.a1_in1k"
    extract(model=model, data=root, cache=cache, random_weights=True,
            options=ExtractOptions(device="cpu", batch_size=16, workers=0))
    res = runner.invoke(featstore_app, ["info", model, "--cache", str(cache)])
    assert res.exit_code == 0 and "label leakage" in res.output
    res = runner.invoke(probes_app, ["fit", "--features", model, "--cache", str(cache), "--runs", str(tmp_path / "r")])
    assert res.exit_code == 0 and "label leakage" in res.output, res.output
