"""How an extraction runs: options that change no vector (except --compile, which is keyed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExtractOptions:
    """How to run (none of it changes the vectors, so none of it is in the key)."""

    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    shard_rows: int = 4096
    flush_s: float = 60.0  # publish the shard in progress at least this often: a kill loses at most this much work
    wait: bool = False
    compile: bool = False  # in the key all the same: inductor's fusions change rounding (see feature_set_fields)
    # The loop's overlap, on unless measured (no CLI flag: bench/loop_host.py and gpu_check_extract.py turn
    # them off to show what they save). prefetch: uploads on a side stream and rows waited for a batch later
    # (CUDA); write_thread: shards built, written and fsynced by a writer thread.
    prefetch: bool = True
    write_thread: bool = True
    retry_precision: str | None = None  # images non-finite at `precision` are recomputed at this one (fp32/bf16)
