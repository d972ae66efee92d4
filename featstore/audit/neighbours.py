"""Exact cosine pairs above a threshold by blocked matrix products, streamed within a memory budget."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from featstore.errors import StoreError
from featstore.hardware import fast_bf16

# bf16 rounds each input to 2^-9 relative and the product output to 2^-8: a screened cosine is within
# ~0.006 of the float32 one, so screening at threshold - 0.01 never misses a pair the exact check keeps.
SCREEN_MARGIN = 0.01
QUERY_COLS = 8192  # columns of the resident piece per product: a [block, 8192] bf16 tile stays ~64 MB
MAX_PAIRS = 20_000_000
CANDIDATE_ROWS = 256  # rows of a tile whose candidates are listed together: at most 256 x 8192 indices
EXACT_CHUNK = 65_536  # candidates confirmed in float32 per gather (~0.7 GB at 1408-d for both sides)


def normalise(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """float32 rows, centred on ``mean`` when given, of unit length (zero rows stay zero: they match nothing)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:  # several views: the audit compares the images, so their mean view
        x = x.mean(1)
    if mean is not None:
        x = x - mean
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def stream_mean(blocks: Iterable[np.ndarray], dim: int) -> np.ndarray:
    """The mean row of the stream (float64 sums), one pass."""
    total, n = np.zeros(dim, np.float64), 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        block = block.mean(1) if block.ndim == 3 else block
        total += block.sum(0, dtype=np.float64)
        n += len(block)
    return (total / max(n, 1)).astype(np.float32)


def close_pairs(blocks: Callable[[], Iterable[np.ndarray]], *, n: int, dim: int, threshold: float,
                budget_bytes: float = 4e9, max_pairs: int = MAX_PAIRS, center: bool = True,
                screen: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair i < j (positions in the stream ``blocks()`` yields) with cosine >= ``threshold``: (i, j, cos).

    ``blocks()`` must yield consecutive row blocks of the same n rows each time it is called: rows stay on
    disk, a piece of them (float32 + the screen's copy, 6-8 bytes a value, up to ``budget_bytes``) is held,
    and every later block is streamed past it. Candidates are screened in ``screen`` precision (auto: bf16 where the CPU's
    matrix units make it fast, else fp32: emulated bf16 is ~60x slower than fp32), then kept or dropped
    on their float32 cosine, so the result is exact, not approximate, either way.

    ``center``: cosines of the rows minus their mean. Features share a large common component
    (white sketch backgrounds in pixels, the "cone" of CLIP embeddings), so uncentred cosines of
    distinct images reach 0.95 (digits' pixels: 269 of 269 val images flagged as copies of train);
    centred, only copies stay that close.
    """
    if not -1.0 <= threshold <= 1.0:
        raise StoreError(f"the similarity threshold is a cosine in [-1, 1], got {threshold}")
    if screen not in ("auto", "bf16", "fp32"):
        raise StoreError(f"screen precision {screen!r}: expected auto, bf16 or fp32")
    low = torch.bfloat16 if screen == "bf16" or (screen == "auto" and fast_bf16(torch.device("cpu"))) else torch.float32
    piece_rows = max(1024, int(budget_bytes // ((4 + low.itemsize) * max(dim, 1))))
    mean = stream_mean(blocks(), dim) if center else None
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    for start in range(0, n, piece_rows):
        piece = _gather(blocks(), start, min(n, start + piece_rows), mean)
        piece16 = torch.from_numpy(piece).to(low)
        pos = 0
        for block in blocks():
            block = normalise(block, mean)
            lo, pos = pos, pos + len(block)
            if pos <= start + 1:  # every row of this block comes before the piece: its pairs were seen
                continue
            for i, j, c in _pairs(block, lo, piece, piece16, start, threshold):
                found.append((i, j, c))
                total += len(i)
            if total > max_pairs:
                raise StoreError(f"over {max_pairs:,} pairs have cosine >= {threshold}: the threshold is too low "
                                 "for these features (raise --threshold)")
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    i, j, c = (np.concatenate(a) for a in zip(*found))
    return i, j, c


def _gather(blocks: Iterable[np.ndarray], lo: int, hi: int, mean: np.ndarray | None) -> np.ndarray:
    """Rows lo..hi of the stream, normalised, read block by block."""
    parts, pos = [], 0
    for block in blocks:
        a, pos = pos, pos + len(block)
        if pos > lo and a < hi:
            parts.append(normalise(block[max(lo - a, 0):hi - a], mean))
        if pos >= hi:
            break
    return np.ascontiguousarray(np.concatenate(parts))


def _pairs(block: np.ndarray, lo: int, piece: np.ndarray, piece16: torch.Tensor, start: int, threshold: float):
    """Pairs (piece row p, block row q) with p < q: screened in ``piece16``'s dtype, confirmed in float32."""
    q16 = torch.from_numpy(block).to(piece16.dtype)
    qpos = np.arange(lo, lo + len(block))
    for c0 in range(0, min(len(piece), lo + len(block) - start), QUERY_COLS):  # only columns p < some q
        p16 = piece16[c0:min(c0 + QUERY_COLS, lo + len(block) - start)]
        sims = q16 @ p16.T
        # nonzero over the whole tile costs ~10x the product; a row maximum first leaves it only the rows
        # that hold a candidate (few, but for the tiles on the diagonal, where each row meets itself)
        rows = torch.nonzero(sims.amax(1) >= threshold - SCREEN_MARGIN).squeeze(1)
        # a few candidate rows at a time: on a set of near-copies every cell of the tile is a candidate, and
        # gathering all of them for the exact check at once took 24 GB (200k constant images, 1024-d)
        for g in range(0, len(rows), CANDIDATE_ROWS):
            group = rows[g:g + CANDIDATE_ROWS]
            r, pj = (t.numpy() for t in torch.nonzero(sims[group] >= threshold - SCREEN_MARGIN, as_tuple=True))
            qi = group.numpy()[r]
            pglob = start + c0 + pj
            keep = pglob < qpos[qi]
            qi, pj, pglob = qi[keep], pj[keep], pglob[keep]
            for e0 in range(0, len(qi), EXACT_CHUNK):  # the exact check's gathers stay ~EXACT_CHUNK x dim floats
                qe, pe, ge = qi[e0:e0 + EXACT_CHUNK], pj[e0:e0 + EXACT_CHUNK], pglob[e0:e0 + EXACT_CHUNK]
                exact = np.einsum("ij,ij->i", block[qe], piece[c0 + pe])
                ok = exact >= threshold
                yield ge[ok].astype(np.int64), qpos[qe[ok]].astype(np.int64), exact[ok].astype(np.float32)
