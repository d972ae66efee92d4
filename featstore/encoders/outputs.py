"""Several representations from one forward pass: {output name: [B, D]} through the libraries' own APIs.

Why one module per family and not hooks: timm's `forward_intermediates` and open_clip's projection are
public, so each output is exactly the library's computation (the fidelity tests compare them), and one
pass over the blocks serves every output asked for.
"""

from __future__ import annotations

import torch

from featstore.errors import ExtractionError

LAST_K = 4  # DINOv2's linear evaluation: CLS tokens of the last 4 blocks


def timm_outputs(model: torch.nn.Module) -> tuple[tuple[str, int], ...]:
    """Outputs a timm model offers (works on a meta-device model): ViTs with a CLS token get four."""
    outputs = [("pre_logits", int(model.num_features))]
    if _is_cls_vit(model):
        d = int(model.embed_dim)
        outputs += [("cls", d), ("patch_mean", d), (f"cls_last{LAST_K}", LAST_K * d)]
    return tuple(outputs)


def _is_cls_vit(model: torch.nn.Module) -> bool:
    return (hasattr(model, "forward_intermediates") and getattr(model, "cls_token", None) is not None
            and int(getattr(model, "num_prefix_tokens", 0)) >= 1 and hasattr(model, "embed_dim"))


class TimmOutputs(torch.nn.Module):
    """pre_logits = model(x) with num_classes=0; cls / patch_mean from forward_features' final tokens;
    cls_lastK = the CLS tokens of forward_intermediates(indices=K, norm=True), concatenated."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names
        self.last_k = next((int(n[len("cls_last"):]) for n in names if n.startswith("cls_last")), 0)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m, inter = self.model, []
        if self.last_k:  # one pass: the final (normed) tokens come with the intermediates
            final, inter = m.forward_intermediates(x, indices=self.last_k, return_prefix_tokens=True, norm=True)
        else:
            final = m.forward_features(x)
        out = {}
        for name in self.names:
            if name == "pre_logits":
                out[name] = m.forward_head(final, pre_logits=True)
            elif name == "cls":
                out[name] = final[:, 0]
            elif name == "patch_mean":
                out[name] = final[:, m.num_prefix_tokens:].mean(dim=1)
            else:
                out[name] = torch.cat([prefix[:, 0] for _, prefix in inter], dim=1)
        return out


def openclip_outputs(model_cfg: dict) -> tuple[tuple[str, int], ...]:
    """embed = encode_image (post-projection); pre_proj = the pooled token before the projection."""
    outputs = [("embed", int(model_cfg["embed_dim"]))]
    vision = model_cfg["vision_cfg"]
    if "timm_model_name" in vision:
        if vision.get("timm_proj", "linear") == "none" or vision.get("timm_pool") in ("abs_attn", "rot_attn"):
            return tuple(outputs)  # no projection to split off, or one fused with attention pooling
        import timm

        with torch.device("meta"):
            trunk = timm.create_model(vision["timm_model_name"], pretrained=False, num_classes=0)
        outputs.append(("pre_proj", int(trunk.num_features)))
    elif isinstance(vision.get("layers"), int) and not vision.get("attentional_pool"):  # a ViT tower
        outputs.append(("pre_proj", int(vision["width"])))
    return tuple(outputs)


class OpenClipOutputs(torch.nn.Module):
    """open_clip's visual tower split at its projection: pre_proj = pooled token, embed = its projection.

    open_clip's VisionTransformer applies `pooled @ proj` last; a timm tower (TimmModel) applies its
    `head` (timm_proj linear / mlp) to the trunk's output, or, with timm_proj None (the EVA-CLIP
    configs), uses the trunk's own classifier as the projection. Detaching the projection once keeps a
    single pass for both.
    """

    def __init__(self, visual: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        if hasattr(visual, "trunk") and len(getattr(visual, "head", ())) > 0:  # TimmModel, own projection head
            self.body, self.proj = visual.trunk, visual.head
        elif hasattr(visual, "trunk"):  # TimmModel whose trunk classifier is the projection
            self.body = _PreLogits(visual.trunk)
            self.proj = torch.nn.Sequential(visual.trunk.get_classifier(), visual.head)
        elif isinstance(getattr(visual, "proj", None), torch.nn.Parameter):
            proj = visual.proj
            visual.proj = None  # the tower now returns the pooled token
            self.body, self.proj = visual, _MatMul(proj)
        elif names != ("embed",):
            raise ExtractionError(f"{type(visual).__name__} has no separable projection: only 'embed' is available")
        else:
            self.body, self.proj = visual, torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pre = self.body(x)
        out = {"pre_proj": pre} if "pre_proj" in self.names else {}
        if "embed" in self.names:
            out["embed"] = self.proj(pre)
        return out


class _PreLogits(torch.nn.Module):
    def __init__(self, trunk: torch.nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.forward_head(self.trunk.forward_features(x), pre_logits=True)


class _MatMul(torch.nn.Module):
    def __init__(self, weight: torch.nn.Parameter) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class SingleOutput(torch.nn.Module):
    """Backends with one vector (pixels, convnets): {name: model(x)}."""

    def __init__(self, model: torch.nn.Module, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.model(x)}


def check_outputs(spec_name: str, available: dict[str, int], names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ExtractionError(f"{spec_name} has no output {', '.join(map(repr, unknown))}; "
                              f"available: {', '.join(available)}")
    if len(set(names)) != len(names):
        raise ExtractionError(f"--outputs names an output twice: {','.join(names)}")
