"""torch.compile over a run with mixed shapes compiles a bounded number of times.

A counting backend stands in for inductor (each call of it is one graph compilation), so the
test measures dynamo's recompilations, not inductor's code generation. Shapes mix partial
batches (1 to 4 rows) and two segment lengths (0.64 s and 1.28 s here, the same situation as
5.12 s vs 10.24 s at a quarter of the cost on the tiny golden model).
"""

from __future__ import annotations

import pytest
import torch

from audiosr.config import STAGES, SamplingOptions
from audiosr.engines.diffusion import DiffusionRuntime, Generators, generate
from audiosr.engines.diffusion.compiled import pad_rows, padded_batch
from audiosr.weights import load_model

HOP = 480


def test_padded_batch_sizes():
    assert [padded_batch(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]
    x = torch.ones(3, 2)
    assert pad_rows(x, 4).shape == (4, 2) and pad_rows(x, 4)[3].abs().sum() == 0
    assert pad_rows(x, 3) is x


@pytest.mark.slow
def test_mixed_shapes_compile_a_bounded_number_of_times(golden, golden_config):
    torch._dynamo.reset()
    graphs: list[str] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    model = load_model(golden_config, golden.checkpoint_path)
    runtime = DiffusionRuntime(model, golden_config, compile_backend=counting_backend)
    options = SamplingOptions(steps=1, compile=True, attention="sdpa", filter_family="butter")
    rng = torch.Generator().manual_seed(0)

    def run(rows: int, frames: int) -> None:
        wave = 0.1 * torch.randn(rows, frames * HOP, generator=rng)
        with torch.inference_mode():
            out = generate(
                runtime,
                wave,
                options,
                family="butter",
                generators=Generators.from_seed(0, runtime.device),
                cutoff_hz=torch.full((rows,), 6000.0),
            )
        assert torch.isfinite(out.wave).all()

    # Warm-up: UNet batches (2 rows per item with CFG, padded to a power of two) 2, 4 and 8,
    # 64 and 128 frames: each stage compiles for its first shape, then once or twice more with
    # the changed dimensions dynamic.
    for rows, frames in [(1, 64), (2, 128), (3, 64)]:
        run(rows, frames)
    first = len(graphs)
    assert sorted({s for s, _ in runtime.compiled.keys()}) == sorted(STAGES)
    # New batch sizes and lengths after the first change reuse the dynamic-shape code.
    for rows, frames in [(1, 128), (4, 128), (2, 64), (3, 128)]:
        run(rows, frames)
    assert len(graphs) == first, f"recompiled: {first} -> {len(graphs)} graphs"
    # At most three versions of each of the four stages' graphs (well under dynamo's recompile
    # limit of 8 per function, past which it silently runs eager).
    assert 0 < first <= 3 * len(STAGES), first
