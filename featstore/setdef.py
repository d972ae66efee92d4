"""A feature set as the options define it: its key fields, key, folder and manifest header."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from featstore.datasets import Dataset, scan_dataset
from featstore.distributed import Rank, computed_by_lead
from featstore.encoders import EncoderSpec, get_spec
from featstore.encoders.outputs import check_outputs
from featstore.encoders.registry import backend_for
from featstore.encoders.weights import check_weights_file, file_identity
from featstore.errors import ExtractionError
from featstore.store import default_cache, encoder_dirname, feature_key
from featstore.views import ORIG, parse_views


def feature_set_fields(spec: EncoderSpec, *, weights: str, precision: str, views: int, dataset: str,
                       output: str | None = None, view: str = ORIG, compile: bool = False) -> dict[str, Any]:
    """The canonical description whose hash is the key: no batch size, workers, device or dataset contents.

    The output and view enter only when they are not the default, so today's sets keep their keys.
    `compile` enters when on: torch.compile's fused kernels round differently from eager ones, and no
    GPU check has yet shown the difference stays within float16 rounding, so the two are kept apart.
    """
    fields = {"encoder": spec.key_fields(), "weights": weights, "precision": precision, "views": views,
              "dataset": dataset}
    if compile:
        fields["compile"] = True
    if output and output != spec.default_output:
        fields["output"] = output
    if view != ORIG:
        fields["view"] = view
    return fields


def weights_identity(spec: EncoderSpec, *, weights: Path | None, random_weights: bool) -> str:
    if random_weights:
        return "random-init:seed0"
    if weights is not None:
        return file_identity(check_weights_file(weights))
    return backend_for(spec).weights_identity(spec)


@dataclass(frozen=True)
class SetDefinition:
    """A feature set as the options define it: its key, folder and manifest header, and the scanned dataset."""

    spec: EncoderSpec
    dataset: Dataset
    fields: dict[str, Any]
    key: str
    folder: Path
    header: dict[str, Any]
    output: str = ""
    view: str = ORIG


def define_sets(*, outputs: list[str] | None = None, views: list[str] | None = None,
                **kw: Any) -> list[SetDefinition]:
    """One set per (output, view), all over the same images, view-major (the original view first)."""
    base = define_set(**kw)
    names = tuple(outputs or (base.spec.default_output,))
    check_outputs(base.spec.name, base.spec.output_dims(), names)
    return [_variant(base, o, v) for v in parse_views(",".join(views) if views else None) for o in names]


def _variant(fs: SetDefinition, output: str, view: str) -> SetDefinition:
    """The same images and weights, another output or view: its own key beside the default one."""
    f = fs.fields
    fields = feature_set_fields(fs.spec, weights=f["weights"], precision=f["precision"], views=f["views"],
                                dataset=f["dataset"], output=output, view=view, compile=f.get("compile", False))
    key = feature_key(fields)
    header = {**fs.header, "dim": fs.spec.output_dims()[output], "output": output, "view": view}
    return replace(fs, fields=fields, key=key, folder=fs.folder.parent / key, header=header, output=output, view=view)


def define_set(*, model: str, data: str | Path, cache: str | Path | None, weights: Path | None,
               random_weights: bool, splits: list[str] | None, name: str | None, precision: str,
               compile: bool = False, rank: Rank = Rank()) -> SetDefinition:
    """Everything that names the feature set; `precision` is already resolved (fp32/fp16/bf16).

    Under torchrun rank 0 alone scans the dataset and hashes the weights; the others receive both.
    """
    if weights and random_weights:
        raise ExtractionError("--weights and --random-weights exclude each other")
    spec = get_spec(model)
    output = spec.default_output
    dataset, wid = computed_by_lead(rank, lambda: (
        scan_dataset(data, splits=splits), weights_identity(spec, weights=weights, random_weights=random_weights)))
    fields = feature_set_fields(spec, weights=wid,
                                precision=precision, views=1, dataset=name or str(dataset.root), compile=compile)
    key = feature_key(fields)
    folder = Path(cache or default_cache()) / encoder_dirname(spec.name) / key
    header = {"encoder": spec.name, "dim": spec.output_dims()[output], "views": 1, "output": output, "view": ORIG,
              "dtype": "float16", "classes": list(dataset.classes),
              "random_weights": random_weights, "weights_source": str(weights) if weights else spec.weights_hint,
              "dataset": {"root": str(dataset.root), "name": fields["dataset"], "layout": dataset.layout,
                          "test_order": list(dataset.test_order) if dataset.test_order else None}}
    return SetDefinition(spec, dataset, fields, key, folder, header, output, ORIG)
