"""Which worker this process is (torchrun's environment or `--shard I/N`), its slice of the work, its group."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from featstore.errors import ExtractionError, FeatstoreError

T = TypeVar("T")
# Ranks wait for the slowest one at the barrier before rank 0 merges. torch's default (30 min for gloo)
# is shorter than an unlucky imbalance on a long ImageNet run; a rank that dies is torn down by torchrun
# itself, so a long timeout does not turn a crash into a hang.
BARRIER_TIMEOUT = dt.timedelta(hours=12)


@dataclass(frozen=True)
class Rank:
    """Worker `index` of `count`. `torchrun`: the workers share a process group (barrier, gather)."""

    index: int = 0
    count: int = 1
    local: int = 0
    torchrun: bool = False

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ExtractionError(f"shard {self.index}/{self.count}: expected 0 <= I < N (e.g. --shard 0/4)")

    @property
    def alone(self) -> bool:
        """One worker for the whole set: the plain extraction, which owns the manifest."""
        return self.count == 1

    @property
    def lead(self) -> bool:
        return self.index == 0

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def lock_name(self) -> str:
        """Two launches of the same worker exclude each other; different workers run side by side."""
        return ".lock" if self.alone else f".lock-rank-{self.index}-of-{self.count}"

    def take(self, items: Sequence[T]) -> list[T]:
        """Item k goes to worker k % count: every item exactly once, no padding (unlike DistributedSampler).

        Striding a sorted list also spreads each class over all workers, so their loads stay even.
        """
        return list(items[self.index::self.count])


def parse_shard(text: str) -> Rank:
    """`I/N` (as given to --shard) -> Rank(I, N)."""
    i, sep, n = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Rank(int(i), int(n))
    except ValueError:
        raise ExtractionError(f"--shard {text!r}: expected I/N with integers, e.g. --shard 0/4") from None


def torchrun_rank(env: dict[str, str] | None = None) -> Rank | None:
    """The rank torchrun (or any env:// launcher) gave this process; None when not launched that way."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank = Rank(int(env["RANK"]), int(env["WORLD_SIZE"]), local=int(env.get("LOCAL_RANK", "0")), torchrun=True)
    except ValueError:
        raise ExtractionError(f"RANK={env['RANK']!r} WORLD_SIZE={env['WORLD_SIZE']!r}: expected integers") from None
    return None if rank.alone else rank


def bind_device(rank: Rank, device: str) -> str:
    """Under torchrun, `auto`/`cuda` mean this rank's GPU, cuda:LOCAL_RANK.

    An explicit cuda:N is refused there: every rank would land on GPU N and NCCL's init would fail
    (or the ranks would share one GPU), so the mistake is named before any work.
    """
    if rank.torchrun and device.startswith("cuda:"):
        raise ExtractionError(f"--device {device} under torchrun (rank {rank.label}): every rank would use that one "
                              "GPU; use --device cuda (each rank takes cuda:LOCAL_RANK) and choose GPUs with "
                              "CUDA_VISIBLE_DEVICES")
    if not rank.torchrun or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    if rank.local >= torch.cuda.device_count():
        raise ExtractionError(f"LOCAL_RANK {rank.local} but torch sees {torch.cuda.device_count()} CUDA devices: "
                              "use --nproc-per-node <= the GPUs of a node")
    torch.cuda.set_device(rank.local)
    return f"cuda:{rank.local}"


@contextmanager
def process_group(rank: Rank, device: torch.device) -> Iterator[None]:
    """torch.distributed for the duration: nccl when the rank runs on CUDA, gloo on CPU; always destroyed."""
    import torch.distributed as dist

    if not rank.torchrun:
        yield
        return
    cuda = device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT,
                            device_id=device if cuda else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(rank: Rank) -> None:
    if rank.torchrun:
        import torch.distributed as dist

        dist.barrier()


def gather_to_lead(rank: Rank, obj: Any) -> list[Any]:
    """Every rank's `obj` on rank 0 (in rank order); other ranks get []. Without a group: [obj]."""
    if not rank.torchrun:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * rank.count if rank.lead else []
    dist.gather_object(obj, out if rank.lead else None, dst=0)
    return out


def computed_by_lead(rank: Rank, compute: Callable[[], T]) -> T:
    """`compute()` run on rank 0 only and its result sent to every rank (a plain call without a group).

    For the start-up work every rank would otherwise repeat while the GPUs wait: the dataset scan (minutes
    on a network filesystem at a million images) and the weights hash. A failure there is sent too, so the
    other ranks raise it instead of waiting for a result that never comes.
    """
    if not rank.torchrun:
        return compute()
    import torch.distributed as dist

    box: list[Any] = [None]
    error: BaseException | None = None
    if rank.lead:
        try:
            box = [("ok", compute())]
        except Exception as e:  # sent as a message: not every exception pickles
            error = e
            box = [("error", e if isinstance(e, FeatstoreError) else None, f"{type(e).__name__}: {e}")]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if box[0][0] == "ok":
        return box[0][1]
    raise box[0][1] or ExtractionError(f"rank 0 failed before the work was split: {box[0][2]}")


def resolve_rank(shard: str | None, env: dict[str, str] | None = None) -> Rank:
    """torchrun's environment, else `--shard I/N`, else the single worker; both at once is an error."""
    launched = torchrun_rank(env)
    if launched and shard:
        raise ExtractionError(f"--shard {shard} under torchrun (rank {launched.label}): torchrun already splits "
                              "the work; drop --shard")
    return launched or (parse_shard(shard) if shard else Rank())
