"""Weights files: safe loading (safetensors or weights-only pickles) and a content identity for the key."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from featstore.encoders.hashcache import cached_hash
from featstore.errors import WeightsError

_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def validate_weights_file(path: Path) -> Path:
    """Exists, readable, safe, and a name -> tensor mapping: checked before a model is built."""
    path = check_weights_file(path)
    if path.suffix.lower() == ".safetensors":
        _check_safetensors_header(path)  # load_file would read every tensor only for the library to read them again
    else:
        load_state_dict_file(path, mmap=True)
    return path


def _check_safetensors_header(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if not list(f.keys()):
                raise WeightsError(f"{path.name} holds no tensors")
    except WeightsError:
        raise
    except Exception as e:  # safetensors raises its own types for a damaged header
        raise WeightsError(f"cannot read weights file {path}: {_first_line(e)}") from e


def check_weights_file(path: Path) -> Path:
    """Fail early with the path in the message, before a model is built."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"weights path is not a file: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file is empty: {path}")
    if path.suffix.lower() not in _SUFFIXES:
        raise WeightsError(f"weights file {path.name}: expected one of {', '.join(_SUFFIXES)}")
    return path.resolve()


def file_identity(path: Path) -> str:
    """sha256 of the file's bytes: the same weights under another name give the same feature set.

    Remembered by path, size and mtime (featstore.encoders.hashcache): every run and every torchrun rank
    used to re-read the whole file (4 GB for EVA-g) before any image was touched.
    """
    return cached_hash(Path(path), sha256_file)


def sha256_file(path: Path, *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def load_state_dict_file(path: Path, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a weights-only torch file; refuses arbitrary pickles.

    With mmap=True tensors are not read into memory: a cheap validation before a library loads the file
    (libraries report every unpickling problem as "not weights-only", even for a file that is just garbage).
    """
    path = check_weights_file(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as e:  # legacy (non-zip) torch files cannot be memory-mapped
            if not (mmap and "mmap" in str(e)):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e) and "GLOBAL" not in str(e):  # no code reference: just not a pickle
            raise WeightsError(f"cannot read weights file {path}: not a torch or safetensors file ({_first_line(e)})") from e
        raise WeightsError(f"refusing to load {path.name}: it is not a weights-only file ({_first_line(e)})") from e
    except Exception as e:  # safetensors / zip / pickle raise many types for a damaged file
        raise WeightsError(f"cannot read weights file {path}: {_first_line(e)}") from e
    for k in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path.name} does not hold a state dict (name -> tensor)")
    return obj


def translate_load_error(e: Exception, *, path: Path, model: str) -> WeightsError:
    """A library's load failure as one line naming the file and the model."""
    msg = _first_line(e)
    if "weights_only" in str(e) or isinstance(e, pickle.UnpicklingError):
        return WeightsError(f"refusing to load {path.name}: not a weights-only file ({msg})")
    return WeightsError(f"weights {path} do not load into {model}: {msg}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


_HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cached(repo_id: str) -> bool:
    """Whether the hub cache already holds weights for this repo (checked before building a big model)."""
    from huggingface_hub import try_to_load_from_cache

    repo_id = repo_id.strip("/")
    return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in _HUB_FILES)


def require_hub_weights(repo_id: str | None, message: str) -> None:
    """Offline with an empty cache: fail now, not after building a billion-parameter model."""
    if repo_id and hub_offline() and not hub_cached(repo_id):
        raise WeightsError(message)
