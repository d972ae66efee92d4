"""The extraction loop's throughput machinery, on CPU: writer thread, deferred rows, --compile's block and padding."""

from __future__ import annotations

import errno
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounter

import featstore.job
import featstore.runtime
from corpus import assert_same_store, store_contents, write_folder_dataset
from featstore.background import BackgroundWriter
from featstore.compiled import compile_blocks, repeated_blocks
from featstore.encoders import create_encoder
from featstore.extract import ExtractOptions, extract
from featstore.forward import BatchEncoder
from featstore.runtime import resolve_runtime
from featstore.store import FeatureSetWriter

OPTS = ExtractOptions(device="cpu", workers=0, batch_size=2, flush_s=0.0)
VIT = "timm:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("loop")
    root = write_folder_dataset(base / "data", per_class=3, val_per_class=1, test=2)
    extract(model="pixels", data=root, cache=base / "cache", options=ExtractOptions(device="cpu", workers=0))
    return root, store_contents(base / "cache")


@pytest.mark.parametrize("write_thread", [True, False])
def test_shards_are_written_by_the_writer_thread(tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch,
                                                 write_thread: bool) -> None:
    root, ref = data
    threads: set[str] = set()
    original = FeatureSetWriter.flush

    def flush(self, split):
        if self._buf.get(split):
            threads.add(threading.current_thread().name)
        original(self, split)

    monkeypatch.setattr(FeatureSetWriter, "flush", flush)
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=replace(OPTS, write_thread=write_thread))
    # flush_s=0: every batch is a shard, all written off the loop thread (on it when measuring the difference)
    assert threads == {"featstore-writer" if write_thread else "MainThread"}
    assert_same_store(store_contents(tmp_path / "cache"), ref)


def test_a_writer_thread_error_is_raised_in_the_loop_thread_as_is(tmp_path: Path, data,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = data
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path))

    def write_shard(*a, **k):
        raise full

    monkeypatch.setattr("featstore.store.writer.write_shard", write_shard)
    with pytest.raises(OSError) as e:
        extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    assert e.value is full  # the same exception object, so the CLI boundary prints the same one line
    folder = next((tmp_path / "cache").glob("*/*"))
    assert not list(folder.glob("*.h5")) and not list(folder.glob(".tmp*"))  # no shard, valid or half-written


class _Slow:
    """A WriterGroup stand-in whose add waits until released; records what it was handed."""

    def __init__(self) -> None:
        self.release, self.rows = threading.Event(), []

    def add(self, split, ids, *rest) -> None:
        self.release.wait(10)
        self.rows += ids


def test_hand_over_blocks_only_when_the_queue_is_full_and_leaving_drains_it() -> None:
    slow = _Slow()
    with BackgroundWriter(slow, depth=2) as sink:
        for k in range(3):  # one in the writer's hands, two waiting: none of these blocks for good
            sink.add("train", [f"a{k}"], [0], ["s"], {})
        fourth = threading.Thread(target=sink.add, args=("train", ["a3"], [0], ["s"], {}))
        fourth.start()
        fourth.join(0.3)
        assert fourth.is_alive()  # bounded: the loop thread waits instead of piling up batches
        slow.release.set()
        fourth.join(10)
    assert slow.rows == ["a0", "a1", "a2", "a3"]


def test_an_interrupt_in_the_loop_thread_still_hands_every_queued_row_over() -> None:
    slow = _Slow()
    with pytest.raises(KeyboardInterrupt):
        with BackgroundWriter(slow, depth=4) as sink:
            for k in range(3):
                sink.add("train", [f"a{k}"], [0], ["s"], {})
            slow.release.set()
            raise KeyboardInterrupt  # what SIGTERM raises (featstore.signals)
    assert slow.rows == ["a0", "a1", "a2"]  # then the writer's own exit flushes its buffer


def _deferring(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU loop on the CPU: batch k+1 is launched before the rows of batch k are stored."""
    original = featstore.job.Job.__init__

    def init(self, *a, **k):
        original(self, *a, **k)
        self.defer = True

    monkeypatch.setattr(featstore.job.Job, "__init__", init)


def test_deferred_rows_give_the_same_store(tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch) -> None:
    root, ref = data
    _deferring(monkeypatch)
    extract(model="pixels", data=root, cache=tmp_path / "cache", options=OPTS)
    assert_same_store(store_contents(tmp_path / "cache"), ref)


def test_an_interrupt_keeps_the_batch_already_computed(tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch) -> None:
    root, ref = data
    _deferring(monkeypatch)

    class Stop:
        seen = 0

        def start(self, split, total): ...
        def end(self): ...

        def advance(self, n):
            Stop.seen += n
            if Stop.seen >= 4:  # two batches launched, the second's rows still on their way
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(model="pixels", data=root, cache=tmp_path / "cache", splits=["train"], options=OPTS, progress=Stop())
    rep = extract(model="pixels", data=root, cache=tmp_path / "cache", splits=["train"], options=OPTS)
    assert rep.splits[0].reused == 4


def test_compile_picks_the_repeated_block_and_compiles_it_once() -> None:
    model, _ = create_encoder(VIT, random_weights=True)
    name, blocks = repeated_blocks(model)
    assert name.endswith("blocks") and len(blocks) == 12
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        eager = model(x)
        counter = CompileCounter()  # dynamo's tracing without inductor: no C compiler, seconds on a CPU
        compile_blocks(model, backend=counter)
        compiled = model(x)
    assert counter.frame_count == 1  # one graph, run by all 12 blocks with their own weights
    torch.testing.assert_close(compiled, eager)


def test_padded_rows_equal_unpadded_ones_in_fp32() -> None:
    model, pre = create_encoder(VIT, random_weights=True)
    rt = resolve_runtime("cpu", "fp32")
    x = torch.randint(0, 256, (3, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = {}
    for pad in (False, True):
        enc = BatchEncoder(model, pre, rt, batch_size=8, outputs=("pre_logits",), views=("orig",), pad=pad)
        launched = enc.launch(x)
        assert [len(c[3].wait()[""]) for c in launched.chunks] == [8 if pad else 3]
        got[pad], bad = enc.finish(launched)
        assert not bad
    np.testing.assert_array_equal(got[True][("pre_logits", "orig")], got[False][("pre_logits", "orig")])


def test_compiled_run_never_recompiles_on_a_partial_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folder_dataset(tmp_path / "data", per_class=1, val_per_class=0, test=0)  # 3 images: batches 2 + 1
    counter = CompileCounter()
    monkeypatch.setattr(featstore.runtime, "compile_blocks", lambda m: compile_blocks(m, backend=counter))
    extract(model=VIT, data=root, cache=tmp_path / "cache", random_weights=True,
            options=ExtractOptions(device="cpu", workers=0, batch_size=2, compile=True))
    assert counter.frame_count == 1
