"""Host-to-device copies on a side stream, so the next batch uploads while this one computes.

On the default stream an upload queues behind the forward pass in flight: the GPU computes, then copies,
then computes. On a stream of its own the copy engine moves batch k+1 while the SMs run batch k; an
event makes the forward of k+1 wait for its own upload only. On the CPU there is nothing to copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Staged:
    """A batch on its way to the device: the tensor there, and the event that marks the copy done."""

    pixels: torch.Tensor
    ready: torch.cuda.Event | None = None


class DeviceFeed:
    """stage(): start the upload (returns at once); take(): the device tensor, usable on the current stream."""

    def __init__(self, device: torch.device, *, side_stream: bool = True) -> None:
        """side_stream=False: the batch stays on the host; the forward uploads it on its own stream."""
        self.device = device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" and side_stream else None

    def stage(self, pixels: torch.Tensor) -> Staged:
        if self._stream is None or len(pixels) == 0:
            return Staged(pixels)
        # no wait on the compute stream: the side stream allocates from its own pool, and record_stream
        # (in take) keeps a block used by the compute stream from returning to that pool early
        with torch.cuda.stream(self._stream):
            on_device = pixels.to(self.device, non_blocking=True)  # pinned by the loader: truly async
            ready = torch.cuda.Event()
            ready.record(self._stream)
        return Staged(on_device, ready)

    def take(self, staged: Staged) -> torch.Tensor:
        if staged.ready is not None:
            torch.cuda.current_stream(self.device).wait_event(staged.ready)
            # allocated on the side stream, used on the compute stream: keep the allocator from reusing it early
            staged.pixels.record_stream(torch.cuda.current_stream(self.device))
        return staged.pixels
