"""Hub weights before a model is built: cached or not, and a failure at once when the hub cannot be reached."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from featstore.encoders.spec import EncoderSpec
from featstore.encoders.weights import hub_cached, hub_offline
from featstore.errors import WeightsError

PROBE_TIMEOUT_S = 3.0  # one TCP connect; huggingface_hub's own retries took ~57 s to give up offline


def missing_weights_message(spec: EncoderSpec, e: Exception | str) -> str:
    """The whole first line of the cause (never cut mid-word), after what to do."""
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"no weights for {spec.name}: pass --weights FILE (safetensors or a weights-only .pth state dict), "
            f"or fill the hub cache online and rerun with HF_HUB_OFFLINE=1 ({reason})")


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    from huggingface_hub import constants

    url = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def ensure_hub_weights(repo_id: str | None, spec: EncoderSpec) -> None:
    """Fail now, with the whole message, when the weights are not cached and cannot be fetched (offline mode,
    or the hub does not answer within a few seconds), not after building the model and a minute of retries."""
    if not repo_id or hub_cached(repo_id):
        return
    if hub_offline():
        raise WeightsError(missing_weights_message(spec, "HF_HUB_OFFLINE=1 and not cached"))
    if not hub_reachable():
        raise WeightsError(missing_weights_message(spec, f"not cached, and the hub did not answer within {PROBE_TIMEOUT_S:g} s"))


def cached_state(spec: EncoderSpec) -> str:
    """For `featstore models`: 'cached', 'not cached', or '' when the weights come from no hub repo."""
    hint = spec.weights_hint
    if " hub " not in hint:
        return ""
    repo = hint.split(" hub ", 1)[1].strip()
    if repo in ("", "none") or repo.startswith(("http://", "https://")):
        return ""
    return "cached" if hub_cached(repo.removeprefix("hf-hub:")) else "not cached"
