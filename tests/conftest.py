"""Shared fixtures: every test runs offline, on the CPU, in temporary folders."""

from __future__ import annotations

import os
import tempfile

# Never reach a model hub from a test, even by accident.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Weights hashes are remembered across runs; tests keep that memory out of the user's home.
os.environ["FEATSTORE_HASH_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="featstore-test-"), "file-hashes.json")
