"""Segmenting and cross-fading: exact reconstruction, streaming == batch, weight properties."""

from __future__ import annotations

import math

import pytest
import torch

from audiosr.chunking import (
    OverlapAdder,
    fade_in,
    iter_segments,
    num_segments,
    overlap_add,
    plan_segments,
    split,
)

# (length, segment, overlap): shorter than a segment, exact fits, one sample over, a last
# segment barely longer than the overlap, no overlap, maximal overlap, tiny segments.
CASES = [
    (1, 16, 4),
    (7, 16, 4),
    (16, 16, 4),
    (17, 16, 4),
    (28, 16, 4),
    (29, 16, 4),
    (100, 16, 0),
    (100, 16, 8),
    (101, 17, 8),
    (5, 2, 1),
    (1000, 64, 13),
    (4801, 480, 48),
]


def _signal(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


@pytest.mark.parametrize(("length", "segment", "overlap"), CASES)
def test_overlap_add_of_split_is_exact(length: int, segment: int, overlap: int) -> None:
    x = _signal((2, 3, length))
    chunks = split(x, segment, overlap)
    assert chunks.shape == (num_segments(length, segment, overlap), 2, 3, segment)
    y = overlap_add(chunks, overlap, length)
    assert y.shape == x.shape
    assert torch.equal(y, x)  # bit-exact, not merely close


@pytest.mark.parametrize(("length", "segment", "overlap"), CASES)
def test_plan_covers_signal(length: int, segment: int, overlap: int) -> None:
    spans = plan_segments(length, segment, overlap)
    hop = segment - overlap
    assert spans[0][0] == 0 and spans[-1][1] == length
    for k, (start, stop) in enumerate(spans):
        assert start == k * hop and stop == min(start + segment, length)
    # Every segment after the first reaches past its overlap with the previous one, so a
    # cross-fade always has real samples on both sides (upstream crashes when it does not).
    for start, stop in spans[1:]:
        assert stop - start > overlap
    # No segment is wasted: dropping the last one would leave samples uncovered.
    assert len(spans) == 1 or spans[-2][1] < length


def test_split_pads_last_segment_with_zeros() -> None:
    x = torch.arange(1, 12, dtype=torch.float32)  # 11 samples, no zeros
    chunks = split(x, 6, 2)  # starts 0, 4, 8
    assert chunks.shape == (3, 6)
    assert torch.equal(chunks[2], torch.tensor([9.0, 10.0, 11.0, 0, 0, 0]))
    assert torch.equal(chunks[1], x[4:10])
    assert split(x[:10], 6, 2).shape == (2, 6)  # 10 samples fit in two segments exactly


def test_weights_sum_to_one_and_are_raised_cosine() -> None:
    for overlap in (1, 2, 3, 10, 480):
        w = fade_in(overlap, dtype=torch.float64)
        assert torch.allclose(w + w.flip(0), torch.ones(overlap, dtype=torch.float64))
        i = torch.arange(overlap, dtype=torch.float64)
        expected = torch.sin(math.pi / 2 * (i + 0.5) / overlap) ** 2
        assert torch.allclose(w, expected)
        assert bool((w[1:] > w[:-1]).all())  # strictly rising


def test_crossfade_weights_by_processing_constant_chunks() -> None:
    # Segment k filled with the value k: the output is then k-1 + w_in * 1 across each
    # overlap, exposing the weights; a constant offset per chunk shows no step anywhere else.
    segment, overlap, length = 10, 4, 26
    chunks = torch.arange(num_segments(length, segment, overlap), dtype=torch.float64)
    chunks = chunks[:, None].expand(-1, segment).clone()
    y = overlap_add(chunks, overlap, length)
    w = fade_in(overlap, dtype=torch.float64)
    assert torch.allclose(y[6:10], 0 + w)
    assert torch.allclose(y[12:16], 1 + w)
    assert torch.equal(y[:6], torch.zeros(6, dtype=torch.float64))
    assert torch.equal(y[10:12], torch.ones(2, dtype=torch.float64))


def test_crossfade_is_seamless_for_processed_chunks() -> None:
    # A gain of 2 applied per chunk must give exactly 2x the signal (linearity + sum to 1).
    x = _signal((1, 999), seed=3)
    chunks = split(x, 100, 30) * 2
    assert torch.allclose(overlap_add(chunks, 30, 999), 2 * x, atol=1e-6)


@pytest.mark.parametrize(("length", "segment", "overlap"), CASES)
@pytest.mark.parametrize("block", [1, 5, 64, 10_000])
def test_streaming_equals_batch(length: int, segment: int, overlap: int, block: int) -> None:
    x = _signal((2, length), seed=length)
    blocks = [x[..., i : i + block] for i in range(0, length, block)]
    streamed = list(iter_segments(iter(blocks), segment, overlap))
    batch = split(x, segment, overlap)
    assert len(streamed) == batch.shape[0]
    assert torch.equal(torch.stack(streamed), batch)

    # A processing step per segment (here a sign-preserving nonlinearity) then streaming OLA.
    adder = OverlapAdder(segment, overlap, length=length)
    pieces = [adder.push(torch.tanh(c)) for c in streamed] + [adder.finish()]
    assert all(p.shape[-1] <= segment for p in pieces)  # memory bounded by one segment
    y = torch.cat(pieces, dim=-1)
    assert torch.equal(y, overlap_add(torch.tanh(batch), overlap, length))


def test_streaming_without_length_keeps_padding() -> None:
    x = _signal((1, 25))
    adder = OverlapAdder(10, 2)  # length unknown: the padded tail comes back too
    y = torch.cat([adder.push(c) for c in split(x, 10, 2)] + [adder.finish()], dim=-1)
    assert y.shape[-1] == 2 * 8 + 10
    assert torch.equal(y[..., :25], x)
    assert torch.equal(y[..., 25:], torch.zeros(1, 1))


def test_empty_signal() -> None:
    x = torch.zeros(2, 0)
    assert plan_segments(0, 8, 2) == []
    assert split(x, 8, 2).shape == (0, 2, 8)
    assert overlap_add(split(x, 8, 2), 2, 0).shape == (2, 0)
    assert list(iter_segments([x], 8, 2)) == []


@pytest.mark.parametrize(("segment", "overlap"), [(0, 0), (10, 6), (10, -1)])
def test_invalid_plans_are_refused(segment: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="segment|overlap"):
        plan_segments(100, segment, overlap)


def test_overlap_add_checks_segment_count() -> None:
    chunks = split(torch.zeros(50), 10, 2)
    with pytest.raises(ValueError, match="do not cover"):
        overlap_add(chunks, 2, 80)
