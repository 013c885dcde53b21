r"""Model-agnostic segmenting: cut a long signal into fixed segments, stitch results back.

Engines only ever see segments of one fixed length (5.12 s or 10.24 s at 48 kHz); this module
is the only place that knows about overlaps. Consecutive segments share ``overlap`` samples and
are cross-faded there with raised-cosine weights that sum to exactly one, so a chain of
identity engines returns the input bit for bit, and a real engine gets a seamless, click-free
transition (the fade is as smooth as a Hann window: zero slope at both ends).

Weights of three consecutive segments (``segment = 8``, ``overlap = 3``, hop 5)::

    sample   0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
    seg 0    1  1  1  1  1  \  \  \                         fade out: 1 - w_in
    seg 1                   /  /  /  1  1  \  \  \          fade in: w_in[i]
    seg 2                                  /  /  /  1  1  1
    sum      1  1  1  1  1  1  1  1  1  1  1  1  1  1  1  1

    w_in[i] = sin^2(pi/2 * (i + 1/2) / overlap),  i = 0 .. overlap-1

Unlike upstream's chunked path (spec §12.3), the weights need no division by their sum, the
last segment can be of any length (it is zero-padded; its real part is always longer than
the overlap) and no per-segment gain is applied: gain is decided once per file.

Shapes: a signal is ``[..., T]`` (any leading dims, e.g. ``[C, T]``); segments are stacked on
a new first dim, ``[N, ..., segment]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def _check(segment: int, overlap: int) -> None:
    if segment <= 0:
        raise ValueError(f"segment must be a positive number of samples, got {segment}")
    if not 0 <= overlap <= segment // 2:
        raise ValueError(
            f"overlap must be in [0, segment // 2] = [0, {segment // 2}] samples, got {overlap} "
            "(with more than half a segment, three segments would overlap)"
        )


def num_segments(n_samples: int, segment: int, overlap: int) -> int:
    """How many segments of ``segment`` samples, hop ``segment - overlap``, cover ``n_samples``."""
    _check(segment, overlap)
    if n_samples <= 0:
        return 0
    hop = segment - overlap
    return 1 + max(0, math.ceil((n_samples - segment) / hop))


def plan_segments(n_samples: int, segment: int, overlap: int) -> list[tuple[int, int]]:
    """Sample ranges ``[start, stop)`` of the segments covering a signal.

    Args:
        n_samples: signal length (samples).
        segment: segment length (samples).
        overlap: samples shared by consecutive segments, at most ``segment // 2``.

    Returns:
        ``(start, stop)`` per segment with ``stop = min(start + segment, n_samples)``; segment
        ``k`` starts at ``k * (segment - overlap)``. Only the last one can be short, and its
        real part is always longer than ``overlap``. Empty for ``n_samples == 0``.
    """
    hop = segment - overlap
    return [
        (k * hop, min(k * hop + segment, n_samples))
        for k in range(num_segments(n_samples, segment, overlap))
    ]


def split(x: Tensor, segment: int, overlap: int) -> Tensor:
    """Cut ``x [..., T]`` into overlapping segments ``[N, ..., segment]``.

    The last segment is zero-padded to full length (a view-free copy; ``x`` is not changed).
    """
    spans = plan_segments(x.shape[-1], segment, overlap)
    if not spans:
        return x.new_zeros((0, *x.shape[:-1], segment))
    padded_len = spans[-1][0] + segment
    padded = torch.nn.functional.pad(x, (0, padded_len - x.shape[-1]))
    return torch.stack([padded[..., start : start + segment] for start, _ in spans])


def fade_in(overlap: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Raised-cosine fade-in ``w[i] = sin²(π/2 · (i + ½) / overlap)``, ``i < overlap``.

    Sampled at half-integer points, ``w[i] + w[overlap - 1 - i] = 1``: the fade is symmetric
    and the fade-out is its complement. Computed in float64, then cast.
    """
    i = torch.arange(overlap, dtype=torch.float64, device=device)
    return torch.sin(0.5 * math.pi * (i + 0.5) / overlap).square().to(dtype)


def _crossfade(tail: Tensor, head: Tensor, w_in: Tensor) -> Tensor:
    """``tail · (1 - w) + head · w``, written as ``tail + w · (head - tail)``.

    The lerp form is exact when ``tail == head`` (the two weights cannot round to a sum other
    than one), which makes ``overlap_add(split(x)) == x`` hold bit for bit.
    """
    return torch.lerp(tail, head, w_in.to(tail.dtype))


def overlap_add(chunks: Tensor, overlap: int, length: int) -> Tensor:
    """Stitch processed segments ``[N, ..., segment]`` back into a signal ``[..., length]``.

    Args:
        chunks: segments in order, as from :func:`split` (after processing).
        overlap: the overlap used by :func:`split` (samples).
        length: the original signal length; the zero-padded tail is dropped.

    Returns:
        ``[..., length]``: each overlap cross-faded with raised-cosine weights summing to 1.
    """
    n, segment = chunks.shape[0], chunks.shape[-1]
    _check(segment, overlap)
    if n != num_segments(length, segment, overlap):
        raise ValueError(
            f"{n} segments of {segment} samples with overlap {overlap} do not cover "
            f"{length} samples (expected {num_segments(length, segment, overlap)})"
        )
    if n == 0:
        return chunks.new_zeros((*chunks.shape[1:-1], length))
    adder = OverlapAdder(segment, overlap, length=length)
    pieces = [adder.push(chunk) for chunk in chunks]
    pieces.append(adder.finish())
    return torch.cat(pieces, dim=-1)


class OverlapAdder:
    """Streaming :func:`overlap_add`: push segments in order, get finished samples back.

    Memory stays at one overlap region however long the signal. The concatenation of every
    :meth:`push` result and :meth:`finish` equals :func:`overlap_add` of all segments.

    Args:
        segment: segment length (samples).
        overlap: overlap between consecutive segments (samples).
        length: total signal length, if known; :meth:`finish` then drops the zero-padded tail.
    """

    def __init__(self, segment: int, overlap: int, length: int | None = None) -> None:
        _check(segment, overlap)
        self.segment = segment
        self.overlap = overlap
        self.length = length
        self.emitted = 0  # samples returned so far
        self._tail: Tensor | None = None  # last `overlap` samples of the previous segment
        self._w_in: Tensor | None = None

    def push(self, chunk: Tensor) -> Tensor:
        """Add the next segment ``[..., segment]``; returns the samples now final ``[..., n]``."""
        if chunk.shape[-1] != self.segment:
            raise ValueError(f"expected segments of {self.segment} samples, got {chunk.shape}")
        ov = self.overlap
        if self._tail is None or ov == 0:
            body = chunk[..., : self.segment - ov]
        else:
            if self._w_in is None:
                self._w_in = fade_in(ov, dtype=chunk.dtype, device=chunk.device)
            mixed = _crossfade(self._tail, chunk[..., :ov], self._w_in)
            body = torch.cat([mixed, chunk[..., ov : self.segment - ov]], dim=-1)
        self._tail = chunk[..., self.segment - ov :].clone()
        return self._emit(body)

    def finish(self) -> Tensor:
        """Return the last segment's remaining samples (cropped to ``length`` if given)."""
        if self._tail is None:
            raise ValueError("finish() called before any segment was pushed")
        out = self._emit(self._tail)
        self._tail = None
        return out

    def _emit(self, samples: Tensor) -> Tensor:
        if self.length is not None:
            samples = samples[..., : max(0, self.length - self.emitted)]
        self.emitted += samples.shape[-1]
        return samples


def iter_segments(blocks: Iterable[Tensor], segment: int, overlap: int) -> Iterator[Tensor]:
    """Streaming :func:`split`: re-cut blocks ``[..., n]`` of any size into segments.

    Yields the same segments ``[..., segment]`` as ``split(torch.cat(blocks, -1))``, holding
    at most one segment plus one block in memory. Pair with :class:`OverlapAdder`.
    """
    _check(segment, overlap)
    hop = segment - overlap
    buffer: Tensor | None = None
    total = 0  # samples seen
    start = 0  # signal position of buffer[..., 0]
    emitted_until = 0  # end of the last yielded segment's real part
    for block in blocks:
        total += block.shape[-1]
        buffer = block if buffer is None else torch.cat([buffer, block], dim=-1)
        while buffer.shape[-1] >= segment:
            yield buffer[..., :segment]
            emitted_until = start + segment
            buffer, start = buffer[..., hop:], start + hop
    if buffer is None or total == 0:
        return
    # Segments still needed: those whose start lies below `total` and that `split` would
    # produce, i.e. until one reaches past the end (the first one always counts).
    while emitted_until < total:
        piece = buffer[..., :segment]
        yield torch.nn.functional.pad(piece, (0, segment - piece.shape[-1]))
        emitted_until = start + segment
        buffer, start = buffer[..., hop:], start + hop
