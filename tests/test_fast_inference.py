"""The speed options of the diffusion engine against its faithful fp32 path (tiny golden model).

Every run uses the golden checkpoint and the first 1.28 s of the golden input (128 frames, a
quarter of the golden segment, to keep the file fast), DDIM with the original's eta 1 and CFG
3.5 unless a test says otherwise. Tolerances come from measurements on this model (CPU, 3 steps):

| option vs reference        | latent SNR | latent max | wave max  |
|----------------------------|------------|------------|-----------|
| sdpa vs math attention     | 111 dB     | 2.1e-5     | 7.8e-7    |
| batched vs two-call CFG    | 110 dB     | 2.3e-5     | 8.3e-7    |
| channels_last vs NCHW      | 88 dB      | 3.6e-4     | 8.1e-6    |
| bf16 autocast vs fp32      | 27 dB      | 0.40       | 1.2e-2    |
| bf16 weights + autocast    | 26 dB      | 0.40       | 1.3e-2    |

Rounding-only options must stay within the golden README's sampling tolerances (latent atol
1e-3, waveform atol 1e-4) and above 70 dB; bf16 must stay above 20 dB on the latent (CFG 3.5
amplifies the UNet's rounding 3.5x) and 30 dB on the mel and waveform, and below 80 dB on the
latent, which shows that it really ran in half precision.
"""

from __future__ import annotations

import math

import pytest
import torch

from audiosr.config import SamplingOptions
from audiosr.engines.diffusion import (
    STAGES,
    DiffusionRuntime,
    GenerateResult,
    Generators,
    generate,
    stage_dtype,
)
from audiosr.engines.diffusion.fallback import run_per_item
from audiosr.engines.diffusion.layout import has_memory_format
from audiosr.engines.diffusion.placement import resident
from audiosr.upstream import prepare_upstream_batch, read_audio_upstream
from audiosr.weights import load_model

FRAMES = 128  # 1.28 s: two 64-frame latent blocks
STEPS = 3
SEED = 1
LATENT_ATOL = 1e-3  # golden README: full sampling runs, latents
WAVE_ATOL = 1e-4  # golden README: waveforms
MEL_ATOL = 1e-3  # the golden test's mel tolerance (10x the model tolerance)
ROUNDING_SNR_DB = 70.0
BF16_LATENT_SNR_DB = 20.0
BF16_SNR_DB = 30.0
HALF_MAX_SNR_DB = 80.0


@pytest.fixture(scope="module")
def runtime(golden, golden_config) -> DiffusionRuntime:
    model = load_model(golden_config, golden.checkpoint_path)
    return DiffusionRuntime(model, golden_config)


@pytest.fixture(scope="module")
def wave(golden, golden_config) -> torch.Tensor:
    audio, duration = read_audio_upstream(golden.input_path)
    padded = prepare_upstream_batch(audio, duration)
    return padded[:, : FRAMES * golden_config.mel.hop_length].contiguous()


def _options(**changes) -> SamplingOptions:
    return SamplingOptions(steps=STEPS, guidance_scale=3.5, eta=1.0, seed=SEED).replace(**changes)


def _run(runtime: DiffusionRuntime, wave: torch.Tensor, options: SamplingOptions, **kw):
    with torch.inference_mode():
        return generate(
            runtime,
            wave,
            options,
            family="butter",
            generators=Generators.from_seed(options.seed, runtime.device),
            **kw,
        )


def _snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    err = (other.double() - reference.double()).pow(2).sum().item()
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(reference.double().pow(2).sum().item() / err)


@pytest.fixture(scope="module")
def reference(runtime, wave) -> GenerateResult:
    """The faithful path: fp32, math attention, batched CFG (equal to the original to 1e-6)."""
    return _run(runtime, wave, _options())


def _assert_rounding_only(result: GenerateResult, reference: GenerateResult, what: str) -> None:
    torch.testing.assert_close(
        result.latent, reference.latent, atol=LATENT_ATOL, rtol=0, msg=f"{what}: latent"
    )
    torch.testing.assert_close(result.mel, reference.mel, atol=MEL_ATOL, rtol=0, msg=f"{what}: mel")
    torch.testing.assert_close(
        result.wave, reference.wave, atol=WAVE_ATOL, rtol=0, msg=f"{what}: wave"
    )
    assert _snr_db(reference.latent, result.latent) > ROUNDING_SNR_DB, what


def test_sdpa_matches_math(runtime, wave, reference):
    result = _run(runtime, wave, _options(attention="sdpa"))
    _assert_rounding_only(result, reference, "sdpa")


def test_batched_cfg_matches_two_calls(runtime, wave, reference):
    result = _run(runtime, wave, _options(batched_cfg=False))
    _assert_rounding_only(result, reference, "two-call CFG")


def test_channels_last_matches(runtime, wave, reference):
    result = _run(runtime, wave, _options(channels_last=True))
    unet = runtime.model.unet
    assert has_memory_format(unet, torch.channels_last)  # the weights were converted
    again = _run(runtime, wave, _options())  # the next NCHW call converts them back
    assert unet.input_blocks[0][0].weight.is_contiguous()
    _assert_rounding_only(result, reference, "channels_last")
    torch.testing.assert_close(again.wave, reference.wave, atol=0, rtol=0)


def _native_fp16_cpu() -> bool:
    # Without AMX-FP16 the CPU runs fp16 convolutions through slow reference kernels (the tiny
    # decoder alone takes ~45 s on 1.28 s of audio), too slow for this suite.
    probe = getattr(torch.cpu, "_is_amx_fp16_supported", None)
    return bool(probe and probe())


@pytest.mark.parametrize(
    "precision",
    [
        "bf16",
        pytest.param(
            "fp16",
            marks=pytest.mark.skipif(
                not _native_fp16_cpu(),
                reason="this CPU has no native fp16 (AMX-FP16): emulated fp16 convolutions "
                "take minutes; fp16 is covered by benchmarks/bench_speed.py --stage-errors",
            ),
        ),
    ],
)
def test_half_precision_close_to_fp32(runtime, wave, reference, precision):
    result = _run(runtime, wave, _options(precision=precision, attention="sdpa"))
    for name in ("wave", "latent", "mel"):
        tensor = getattr(result, name)
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), name
    assert result.wave.shape == reference.wave.shape
    latent_db = _snr_db(reference.latent, result.latent)
    assert BF16_LATENT_SNR_DB < latent_db < HALF_MAX_SNR_DB, latent_db
    assert _snr_db(reference.mel, result.mel) > BF16_SNR_DB
    assert _snr_db(reference.wave, result.wave) > BF16_SNR_DB


def test_half_precision_weights(golden, golden_config, wave, reference):
    """Weights loaded in bf16 (half the memory) run with bf16 autocast, not with fp32."""
    model = load_model(golden_config, golden.checkpoint_path, dtype=torch.bfloat16)
    rt = DiffusionRuntime(model, golden_config)
    with pytest.raises(ValueError, match="precision"):
        _run(rt, wave, _options())
    result = _run(rt, wave, _options(precision="bf16"))
    latent_db = _snr_db(reference.latent, result.latent)
    assert BF16_LATENT_SNR_DB < latent_db < HALF_MAX_SNR_DB, latent_db
    assert _snr_db(reference.wave, result.wave) > BF16_SNR_DB


def test_stage_dtypes():
    assert all(stage_dtype(s, "fp32") == torch.float32 for s in STAGES)
    assert stage_dtype("unet", "bf16") == torch.bfloat16
    assert stage_dtype("unet", "fp16", ()) == torch.float32
    with pytest.raises(ValueError, match="precision"):
        stage_dtype("unet", "int8")


def test_fp16_overflow_recomputed_in_fp32():
    """An fp16 stage output that overflows (65504 ceiling) is redone in fp32, item by item."""
    layer = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        layer.weight.fill_(300.0)
    inputs = torch.stack([torch.full((4,), 0.01), torch.full((4,), 300.0)])  # item 1 overflows
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        assert not torch.isfinite(layer(inputs[1:])).all()  # the overflow is real
        (out,) = run_per_item(layer, inputs, stage="decoder", fp16=True, modules=[layer])
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out[1], torch.full((4,), 360000.0))
    torch.testing.assert_close(out[0], torch.full((4,), 12.0), rtol=1e-3, atol=0)


class _CallLog:
    """Batch size of every forward call of the stage modules."""

    def __init__(self, runtime: DiffusionRuntime) -> None:
        self.calls: dict[str, list[int]] = {s: [] for s in STAGES}
        self.handles = []
        model = runtime.model
        # The modules whose forward each stage calls (encode()/decode() are methods).
        modules = {
            "encoder": model.cond_vae.encoder,
            "unet": model.unet,
            "decoder": model.decoder_vae.decoder,
            "vocoder": model.vocoder,
        }
        for stage, module in modules.items():
            self.handles.append(module.register_forward_pre_hook(self._hook(stage)))

    def _hook(self, stage: str):
        def hook(_module, args):
            self.calls[stage].append(int(args[0].shape[0]))

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize(
    ("guidance", "batched", "per_step"),
    [(1.0, True, [2]), (3.5, True, [4]), (3.5, False, [2, 2])],
    ids=["guidance-1", "batched-cfg", "two-call-cfg"],
)
def test_unet_calls_per_step(runtime, wave, guidance, batched, per_step):
    """Guidance 1 makes one conditional call per step; CFG one call of 2B or two calls of B."""
    batch = torch.cat([wave, 0.5 * wave])  # B = 2
    log = _CallLog(runtime)
    try:
        _run(runtime, batch, _options(steps=2, guidance_scale=guidance, batched_cfg=batched))
    finally:
        log.close()
    assert log.calls["unet"] == per_step * 2  # 2 DDIM steps
    # Full-resolution stages run one item at a time: peak memory does not grow with B.
    for stage in ("encoder", "decoder", "vocoder"):
        assert log.calls[stage] == [1, 1], stage


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "unipc"])
def test_every_sampler_through_generate(runtime, wave, golden_config, sampler):
    batch = torch.cat([wave, 0.5 * wave])
    result = _run(runtime, batch, _options(sampler=sampler, steps=4, attention="sdpa"))
    hop = golden_config.mel.hop_length
    assert result.wave.shape == (2, hop * FRAMES + 16)
    assert result.latent.shape == runtime.latent_shape(2, FRAMES)
    assert torch.isfinite(result.wave).all() and torch.isfinite(result.latent).all()
    assert result.wave.abs().max() > 0
    assert set(result.timings) == {"condition", "encoder", "sampler", "decoder", "vocoder", "post"}


def test_resident_offload_restores_host_weights():
    """Offload moves a stage for the block, then puts the very same host tensors back."""
    module = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.BatchNorm1d(3))
    before = {k: v.data_ptr() for k, v in module.state_dict().items()}
    meta = torch.device("meta")  # stands in for an accelerator: a real move, no memory
    with resident([module], meta, offload=True):
        assert all(t.is_meta for t in module.state_dict().values())
    after = module.state_dict()
    assert {k: v.data_ptr() for k, v in after.items()} == before
    assert all(t.device.type == "cpu" for t in after.values())
    with resident([module], meta, offload=False):
        pass
    assert all(t.is_meta for t in module.state_dict().values())  # without offload it stays


def test_option_validation():
    with pytest.raises(ValueError, match="cuda_graphs needs compile"):
        SamplingOptions(cuda_graphs=True)
    with pytest.raises(ValueError, match="offload"):
        SamplingOptions(compile=True, cuda_graphs=True, offload=True)
    with pytest.raises(ValueError, match="channels_last"):
        SamplingOptions(channels_last="yes")


def test_cuda_graphs_need_cuda(runtime, wave):
    assert runtime.device.type == "cpu"  # load_model's default device
    with pytest.raises(ValueError, match="CUDA device"):
        _run(runtime, wave, _options(compile=True, cuda_graphs=True))


@pytest.mark.slow
def test_compile_matches_eager(runtime, wave, reference):
    """torch.compile of every stage (inductor C++ on CPU) gives the eager result.

    Takes 1.5-6 minutes on 2 shared CPU cores (inductor compiles four networks).
    """
    result = _run(runtime, wave, _options(compile=True))
    compiled = runtime.compiled.keys()
    again = _run(runtime, wave, _options(compile=True))
    _assert_rounding_only(result, reference, "compile")
    torch.testing.assert_close(again.wave, result.wave, atol=0, rtol=0)
    # One compiled function per stage, built once and reused by the second call.
    assert sorted(stage for stage, _ in compiled) == sorted(STAGES)
    assert runtime.compiled.keys() == compiled


@pytest.mark.gpu
def test_cuda_offload_and_graphs(golden, golden_config, wave, reference):
    """On CUDA: fp32 matches the CPU reference; offload matches resident weights and keeps
    them in host memory; CUDA graphs (compile) run and match."""
    model = load_model(golden_config, golden.checkpoint_path)  # stays on the CPU
    device = torch.device("cuda")
    rt = DiffusionRuntime(model, golden_config, device=device)
    offloaded = _run(rt, wave, _options(offload=True))
    assert all(p.device.type == "cpu" for p in model.parameters())
    resident = _run(rt, wave, _options())
    assert next(model.unet.parameters()).device.type == "cuda"
    torch.testing.assert_close(offloaded.wave, resident.wave, atol=1e-6, rtol=0)
    # x_T and the step noise come from the CUDA generator (spec §8.6), so only the condition,
    # drawn on the CPU generator in both runs, is comparable with the CPU reference (cuDNN
    # convolutions use TF32 by default, hence the looser tolerance).
    torch.testing.assert_close(resident.condition.cpu(), reference.condition, atol=1e-2, rtol=0)
    graphs = _run(rt, wave, _options(compile=True, cuda_graphs=True, attention="sdpa"))
    assert torch.isfinite(graphs.wave).all()
    assert _snr_db(resident.latent, graphs.latent) > 40.0
