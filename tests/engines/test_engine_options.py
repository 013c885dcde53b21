"""Options, presets, precision policy, samplers and the engine registry of the diffusion engine."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest
import torch

import audiosr.api
from audiosr import cli
from audiosr.config import ALL_STEPS, EngineSteps, SamplingOptions
from audiosr.diffusion.samplers import SAMPLERS
from audiosr.engines import ENGINES
from audiosr.engines.base import SincEngine
from audiosr.engines.diffusion import DiffusionRuntime, Generators, generate
from audiosr.engines.diffusion.fallback import run_per_item
from audiosr.engines.diffusion.precision import auto_precision, bf16_native, float32_policy
from audiosr.presets import PRESET_NAMES, PRESETS, preset_options
from audiosr.weights import load_model

REPO = Path(__file__).resolve().parents[2]
HOP = 480


# --- SamplingOptions validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "listed"),
    [
        ({"sampler": "euler"}, "ddim, dpmpp_2m, unipc"),
        ({"eta": -0.5}, "eta must be >= 0"),
        ({"filter_family": "kaiser"}, "butter, cheby1, ellip, bessel"),
        ({"precision": "int8"}, "fp32, bf16, fp16"),
        ({"attention": "flash"}, "math, sdpa"),
        ({"half_stages": ("unet", "codec")}, "encoder, unet, decoder, vocoder"),
        ({"steps": 0}, "positive integer"),
        ({"tf32": "yes"}, "True or False"),
    ],
)
def test_sampling_options_reject_bad_values(change, listed):
    with pytest.raises(ValueError, match=listed):
        SamplingOptions(**change)


# --- one definition of each preset ------------------------------------------------------------


def _cli_options(*flags: str) -> SamplingOptions:
    args = cli._upsample_parser().parse_args(["-i", "x.wav", "-d", "cpu", *flags])
    return cli._sampling_options(args)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_cli_presets_are_the_preset_definitions(name):
    assert _cli_options("--preset", name) == preset_options(name, "cpu")


def test_cli_flags_override_a_preset():
    got = _cli_options("--preset", "fast", "--ddim_steps", "7", "--precision", "fp32")
    assert got == preset_options("fast", "cpu").replace(steps=7, precision="fp32")


def test_api_presets_are_the_preset_definitions(monkeypatch):
    seen = []
    monkeypatch.setitem(ENGINES, "audiosr", lambda **kw: seen.append(kw["options"]) or SincEngine())
    for name in PRESET_NAMES:
        audiosr.api.load(engine="audiosr", preset=name, device="cpu")
    assert seen == [preset_options(name, "cpu") for name in PRESET_NAMES]
    with pytest.raises(ValueError, match="either options or preset"):
        audiosr.api.make_engine(options=SamplingOptions(), preset="fast")
    with pytest.raises(ValueError, match="upstream, quality, fast"):
        audiosr.api.make_engine(preset="turbo", device="cpu")


def test_bench_speed_uses_the_preset_definitions():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        bench = importlib.import_module("bench_speed")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert bench.preset_options is preset_options
    device = torch.device("cpu")
    for name in ("quality", "fast"):
        assert bench.preset_row(name, device).options == preset_options(name, device).replace(
            filter_family="butter"
        )


def test_upstream_preset_is_the_original_sampler():
    up = preset_options("upstream")
    assert (up.steps, up.guidance_scale, up.eta, up.sampler) == (50, 3.5, 1.0, "ddim")
    assert (up.precision, up.attention, up.channels_last, up.compile) == (
        "fp32",
        "math",
        False,
        False,
    )
    assert up.tf32  # the original CLI: set_float32_matmul_precision("high"), cuDNN TF32 on
    assert not PRESETS["quality"]["tf32"] and PRESETS["fast"]["tf32"]


# --- precision policy ---------------------------------------------------------------------------


def test_bf16_is_checked_on_the_requested_cuda_device(monkeypatch):
    """cuda:1 is a Turing card while the current device 0 is an Ampere one: fp16 for cuda:1."""
    capability = {0: (8, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: capability[i])
    assert bf16_native("cuda:0") and not bf16_native("cuda:1")
    assert auto_precision(torch.device("cuda", 1)) == "fp16"
    assert auto_precision(torch.device("cuda", 0)) == "bf16"
    assert auto_precision("cuda") == "bf16"  # the current device
    assert auto_precision("mps") == "fp32"


def test_float32_policy_sets_and_restores_tf32():
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    for tf32 in (True, False):
        with float32_policy(tf32):
            assert torch.get_float32_matmul_precision() == ("high" if tf32 else "highest")
            assert torch.backends.cudnn.allow_tf32 is tf32
        assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before


def test_fp16_weights_overflow_falls_back_to_fp32(golden, golden_config):
    """Half-precision stored weights (a fp16 checkpoint load): the fp32 retry of an overflowing
    item must not feed fp32 input to fp16 weights ("mat1 and mat2 must have the same dtype")."""
    model = load_model(golden_config, golden.checkpoint_path, dtype=torch.float16)
    conv = model.decoder_vae.post_quant_conv  # 1x1 conv, 16 -> 16 channels
    w = conv.weight[0, :, 0, 0].float()
    # An input of fp16-representable values whose first output channel exceeds 65504.
    x = (60000.0 * torch.sign(w))[None, :, None, None].expand(2, -1, 4, 4).contiguous()
    x[1] *= 1e-3  # item 1 stays in range
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        assert not torch.isfinite(conv(x[:1])).all()  # the overflow is real
        (out,) = run_per_item(conv, x, stage="decoder", fp16=True, modules=[conv])
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    expected = torch.nn.functional.conv2d(x[:1], conv.weight.float(), conv.bias.float())
    torch.testing.assert_close(out[:1], expected)
    assert conv.weight.dtype == torch.float16  # the stored weights are put back


# --- samplers, engine steps ---------------------------------------------------------------------


def test_every_sampler_takes_the_same_arguments():
    signatures = {
        name: {
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.name != "order" and p.name != "generator"
        }
        for name, fn in SAMPLERS.items()
    }
    expected = {"denoiser", "x", "schedule", "timesteps", "eta", "noise", "callback", "progress"}
    assert all(names == expected for names in signatures.values()), signatures


@pytest.fixture(scope="module")
def runtime(golden, golden_config) -> DiffusionRuntime:
    return DiffusionRuntime(load_model(golden_config, golden.checkpoint_path), golden_config)


def _wave(rows: int = 1, frames: int = 64) -> torch.Tensor:
    t = torch.arange(frames * HOP) / 48_000
    return (0.3 * torch.sin(2 * torch.pi * 440 * t)).expand(rows, -1).contiguous()


def test_generate_calls_every_sampler_the_same_way(runtime, monkeypatch):
    calls = {}

    def recorder(name):
        def sampler(denoiser, x, schedule, timesteps, **kwargs):
            calls[name] = (sorted(kwargs), kwargs["eta"])
            return x

        return sampler

    module = importlib.import_module("audiosr.engines.diffusion.generate")
    monkeypatch.setattr(module, "SAMPLERS", {n: recorder(n) for n in SAMPLERS})
    for name in SAMPLERS:
        options = SamplingOptions(steps=2, sampler=name, eta=0.5)
        with torch.inference_mode():
            generate(
                runtime,
                _wave(),
                options,
                family="butter",
                generators=Generators.from_seed(0, runtime.device),
                cutoff_hz=torch.tensor([5000.0]),
            )
    assert calls == {n: (["callback", "eta", "noise", "progress"], 0.5) for n in SAMPLERS}


def test_engine_steps_switch_the_originals_own_steps(runtime):
    wave = _wave()
    options = SamplingOptions(steps=1, tf32=True)

    def run(steps: EngineSteps):
        with torch.inference_mode():
            return generate(
                runtime,
                wave,
                options,
                family="butter",
                generators=Generators.from_seed(0, runtime.device),
                cutoff_hz=torch.tensor([5000.0]),
                steps=steps,
            )

    full = run(ALL_STEPS)
    bare = run(EngineSteps(simulate_lowpass=False, replace_mel_bins=False, merge_low_band=False))
    # The original's low-pass simulation changes the condition; without it the input is used.
    assert not torch.equal(full.conditioning.wave_lowpass, wave)
    torch.testing.assert_close(bare.conditioning.wave_lowpass, wave, atol=0, rtol=0)
    assert not torch.equal(full.mel, bare.mel) and not torch.equal(full.wave, bare.wave)
    assert torch.get_float32_matmul_precision() == "highest"  # tf32 restored after the call


# --- engine registry ----------------------------------------------------------------------------


def test_engine_registry():
    assert audiosr.api.ENGINE_NAMES == tuple(ENGINES) == ("audiosr", "dsp", "sinc")
    assert isinstance(audiosr.api.make_engine("sinc"), SincEngine)
    assert audiosr.api.make_engine("dsp").name == "dsp"
    with pytest.raises(ValueError, match="audiosr, dsp, sinc"):
        audiosr.api.make_engine("wavenet")
