"""featstore text: class names through a CLIP model's own tokenizer and text tower, over prompt templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from featstore.classnames import name_pairs, read_lines, read_name_file, readable_names
from featstore.datasets import scan_dataset
from featstore.encoders import get_spec, list_specs
from featstore.encoders.registry import backend_for
from featstore.errors import FeatstoreError
from featstore.store.textset import TextSet, read_text_set, write_text_set

TEXTS_PER_BATCH = 256


def template_set(name: str | Path) -> list[str]:
    """`openai` (the 80 OpenAI ImageNet prompts), `simple` (open_clip's short set), or a file of `{}` lines."""
    from open_clip import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    builtin = {"openai": OPENAI_IMAGENET_TEMPLATES, "simple": SIMPLE_IMAGENET_TEMPLATES}
    if str(name) in builtin:
        return [t("{}") for t in builtin[str(name)]]  # open_clip ships them as functions of the class name
    path = Path(name)
    if not path.is_file():
        raise FeatstoreError(f"--templates {name}: expected openai, simple or a file with one template per line")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    bad = [ln for ln in lines if ln.count("{}") != 1]
    if not lines or bad:
        raise FeatstoreError(f"{path}: each template needs exactly one {{}} for the class name"
                             + (f" (e.g. {bad[0]!r})" if bad else " (file is empty)"))
    return lines


def class_list(*, data: Path | None, classes_file: Path | None, names_file: Path | None) -> tuple[list[str], list[str]]:
    """(classes in the dataset's order, the readable names put in the prompts)."""
    if (data is None) == (classes_file is None):
        raise FeatstoreError("give exactly one of --data DIR (its class folders) or --classes FILE")
    if data is not None:
        classes, overrides = list(scan_dataset(data).classes), {}
    else:
        lines = read_lines(classes_file)
        overrides = name_pairs(lines) or {}  # FOLDER,NAME lines; else the lines are the class names
        classes = list(overrides) or lines
    if names_file is not None:
        overrides = {**overrides, **read_name_file(names_file, classes)}
    return classes, readable_names(classes, overrides=overrides)


@torch.inference_mode()
def encode_texts(model: torch.nn.Module, tokenizer, names: list[str], templates: list[str],
                 device: torch.device) -> np.ndarray:
    """[K, T, D]: every template filled with every name, encode_text(normalize=True), in fp32."""
    texts = [t.format(n) for n in names for t in templates]
    out = [model.encode_text(tokenizer(texts[i:i + TEXTS_PER_BATCH]).to(device), normalize=True).float().cpu()
           for i in range(0, len(texts), TEXTS_PER_BATCH)]
    return torch.cat(out).reshape(len(names), len(templates), -1).numpy()


def embed_class_names(*, model: str, data: Path | None = None, classes_file: Path | None = None,
                      names_file: Path | None = None, templates: str | Path = "openai", cache: Path | None = None,
                      weights: Path | None = None, random_weights: bool = False, device: str = "auto") -> TextSet:
    """Compute (or find, when already stored) the text set of these classes and templates for `model`."""
    from featstore.extract import weights_identity

    spec = get_spec(model)
    if not spec.text:
        able = ", ".join(s.name for s in list_specs() if s.text)
        raise FeatstoreError(f"{spec.name} has no text tower; encoders that can embed text: {able}, "
                             "or open_clip:<arch>:<tag>")
    classes, names = class_list(data=data, classes_file=classes_file, names_file=names_file)
    temps = template_set(templates)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    backend = backend_for(spec)
    clip = backend.build_clip(spec, weights=weights, random_weights=random_weights).to(dev)
    emb = encode_texts(clip, backend.tokenizer(spec), names, temps, dev)
    wid = weights_identity(spec, weights=weights, random_weights=random_weights)
    fields = {"encoder": spec.key_fields(), "weights": wid, "classes": classes, "names": names, "templates": temps,
              "precision": "fp32"}
    folder = write_text_set(cache, encoder=spec.name, key_fields=fields, classes=classes, templates=temps,
                            embeddings=emb, logit_scale=float(clip.logit_scale.exp()), names=names)
    return read_text_set(folder)
