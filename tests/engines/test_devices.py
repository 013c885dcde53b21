"""Device placement of the diffusion engine, proven on CPU with a stand-in device (``meta``).

The rule: exact fp64/complex128 DSP runs on the host (CPU), never on the device the networks run
on (MPS has no float64). Each full engine call below runs its networks on ``meta`` under
:class:`standin.StandInDevice`, which fails on the first float64/complex128 tensor created on
the device, while the DSP runs for real on the CPU.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from standin import DEVICE, Fp64OnDevice, StandInDevice

from audiosr.api import make_engine
from audiosr.config import AudioSRConfig, SamplingOptions
from audiosr.dsp.merge import replace_low_band
from audiosr.engines.diffusion import AudioSREngine, DiffusionRuntime
from audiosr.engines.diffusion.placement import Placement, normalize_device, resident
from audiosr.models.latent_diffusion import AudioSRModel
from audiosr.upstream import LatentDiffusion, super_resolution

SR = 48_000


def _meta_runtime() -> DiffusionRuntime:
    config = AudioSRConfig.tiny()
    with torch.device("meta"):
        model = AudioSRModel(config).eval()
    return DiffusionRuntime(model, config, device=DEVICE)


def _band_limited(seconds: float, rows: int = 2) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    tones = sum(torch.sin(2 * torch.pi * f * t) / (1 + k) for k, f in enumerate((220, 1100, 3300)))
    return torch.stack([0.3 * tones * (r + 1) / rows for r in range(rows)]).float()


@pytest.mark.parametrize("cutoff", [None, 4000.0], ids=["detected", "known"])
def test_modern_engine_keeps_fp64_off_the_device(cutoff):
    engine = AudioSREngine(_meta_runtime(), SamplingOptions(steps=1, attention="sdpa"))
    audio = _band_limited(1.0)
    cutoffs = None if cutoff is None else torch.full((2,), cutoff)
    mode = StandInDevice()
    with mode:
        out = engine(audio, cutoffs)
    assert out.shape == audio.shape and out.dtype == torch.float32
    assert mode.ops_on_device > 100  # the networks really ran on the stand-in device


@pytest.mark.parametrize("sampler", ["unipc"])
def test_ode_samplers_keep_fp64_off_the_device(sampler):
    engine = AudioSREngine(_meta_runtime(), SamplingOptions(steps=2, sampler=sampler))
    with StandInDevice():
        engine(_band_limited(0.5, rows=1), torch.tensor([6000.0]))


def test_upstream_path_keeps_fp64_off_the_device(golden):
    handle = LatentDiffusion(runtime=_meta_runtime())
    with StandInDevice():
        out = super_resolution(handle, str(golden.input_path), seed=42, ddim_steps=1)
    assert out.ndim == 3 and handle.calls == 1


def test_interception_catches_fp64_on_the_device(monkeypatch):
    """Running the low-band merge on the device (the old behaviour) is caught."""

    def merge_on_device(wave, wave_lowpass):
        return replace_low_band(wave.to(DEVICE), wave_lowpass.to(DEVICE))

    # The module (the package re-exports a function of the same name).
    generate_module = importlib.import_module("audiosr.engines.diffusion.generate")
    monkeypatch.setattr(generate_module, "replace_low_band", merge_on_device)
    engine = AudioSREngine(_meta_runtime(), SamplingOptions(steps=1))
    with pytest.raises(Fp64OnDevice, match="float64|complex128"), StandInDevice():
        engine(_band_limited(0.5, rows=1), torch.tensor([6000.0]))


def test_devices_are_normalised():
    """``mps`` and ``mps:0`` are one device: comparing them must not re-move weights."""
    assert normalize_device("mps") == torch.device("mps", 0)
    assert normalize_device("cpu") == torch.device("cpu")
    assert Placement(torch.device("mps")).device == torch.device("mps:0")
    assert Placement(torch.device("meta")).generator_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="CPU"):
        Placement(torch.device("cpu"), host=torch.device("meta"))


def test_resident_skips_modules_already_there():
    module = torch.nn.Linear(2, 2).to(DEVICE)
    mode = StandInDevice(weights=[])
    with mode, resident([module], torch.device("meta"), offload=False):
        pass
    assert mode.ops_on_device == 0  # nothing was copied


def _stage_weights(engine) -> list[torch.Tensor]:
    runtime = engine.runtime
    return [
        p
        for stage in ("encoder", "unet", "decoder", "vocoder")
        for m in runtime.stage_modules(stage)
        for p in [*m.parameters(), *m.buffers()]
    ]


def _tiny_engine(golden, offload: bool):
    return make_engine(
        "audiosr",
        model=golden.checkpoint_path,
        config=golden.config_path,
        device="meta",  # the stand-in accelerator, through the public API
        options=SamplingOptions(steps=1, offload=offload),
    )


def test_offload_through_public_api_moves_weights_per_stage(golden):
    engine = _tiny_engine(golden, offload=True)
    weights = _stage_weights(engine)
    assert all(w.device.type == "cpu" for w in weights)  # loaded to the host, not the device
    seen: dict[str, tuple[set, bool]] = {}

    def record(name: str):
        def hook(module, _args) -> None:
            params = list(module.parameters())
            seen.setdefault(
                name, ({p.device.type for p in params}, any(p.is_inference() for p in params))
            )

        return hook

    model = engine.runtime.model
    stages = {
        "encoder": model.cond_vae.encoder,
        "unet": model.unet,
        "decoder": model.decoder_vae.decoder,
        "vocoder": model.vocoder,
    }
    hooks = [m.register_forward_pre_hook(record(name)) for name, m in stages.items()]
    mode = StandInDevice(weights=weights)
    try:
        with mode:
            engine(_band_limited(0.5, rows=1), torch.tensor([6000.0]))
            first = mode.weight_moves
            engine(_band_limited(0.5, rows=1), torch.tensor([6000.0]))
    finally:
        for h in hooks:
            h.remove()
    # During each stage its weights were on the device, and not inference tensors.
    assert seen == {s: ({"meta"}, False) for s in ("encoder", "unet", "decoder", "vocoder")}
    # Every weight moved once per call (host -> device); afterwards they are on the host again.
    assert first == len(weights) and mode.weight_moves == 2 * len(weights)
    assert all(w.device.type == "cpu" for w in _stage_weights(engine))


def test_without_offload_weights_move_once(golden):
    engine = _tiny_engine(golden, offload=False)
    # Loaded straight onto the device by make_engine: the calls move no weight at all.
    assert all(w.device == DEVICE for w in _stage_weights(engine))
    runtime = engine.runtime
    # Weights on the host and a runtime for the device: moved on first use, then they stay.
    host_model = make_engine(
        "audiosr",
        model=golden.checkpoint_path,
        config=golden.config_path,
        device="cpu",
        options=SamplingOptions(steps=1),
    ).runtime.model
    moved = AudioSREngine(
        DiffusionRuntime(host_model, runtime.config, device=DEVICE), SamplingOptions(steps=1)
    )
    weights = _stage_weights(moved)
    mode = StandInDevice(weights=weights)
    with mode:
        moved(_band_limited(0.5, rows=1), torch.tensor([6000.0]))
        first = mode.weight_moves
        moved(_band_limited(0.5, rows=1), torch.tensor([6000.0]))
    assert first == len(weights) and mode.weight_moves == first
    assert all(w.device == DEVICE for w in _stage_weights(moved))


@pytest.mark.gpu
def test_cuda_offload_pinned_and_no_fp64_on_the_gpu(golden):
    """On a real GPU: offloaded weights are pinned, come back to the host after each call, and
    no float64/complex128 tensor is ever created on the GPU (fast and upstream presets)."""
    from audiosr.presets import preset_options

    for preset in ("fast", "upstream"):
        options = preset_options(preset, "cuda").replace(steps=2, offload=True)
        engine = make_engine(
            "audiosr",
            model=golden.checkpoint_path,
            config=golden.config_path,
            device="cuda",
            options=options,
        )
        weights = _stage_weights(engine)
        assert all(w.device.type == "cpu" and w.is_pinned() for w in weights)
        with StandInDevice(device=torch.device("cuda")):
            out = engine(_band_limited(1.0), torch.tensor([4000.0, 4000.0]))
        assert torch.isfinite(out).all() and out.abs().max() > 0
        assert all(w.device.type == "cpu" for w in _stage_weights(engine))
