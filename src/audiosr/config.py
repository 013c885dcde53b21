"""Typed, frozen configuration of the AudioSR model and of one sampling run.

Field names follow the upstream configuration (``audiosr/utils.py::get_basic_config`` and
``get_vocoder_config_48k``) so a reader can check them line by line. Both official checkpoints
(``basic`` and ``speech``) share one architecture: :data:`BASIC` and :data:`SPEECH` are equal.

Runtime choices (steps, guidance, seed, sampler, precision) live in :class:`SamplingOptions`,
passed per call and never stored on a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class MelConfig:
    """Log-mel front end shared by the VAE and the vocoder (upstream ``preprocessing``)."""

    sample_rate: int = 48_000  # Hz
    n_fft: int = 2048  # samples
    hop_length: int = 480  # samples (10 ms)
    win_length: int = 2048  # samples
    n_mels: int = 256
    f_min: float = 20.0  # Hz
    f_max: float = 24_000.0  # Hz
    log_floor: float = 1e-5  # magnitude clamp before the natural log

    @property
    def frames_per_second(self) -> int:
        return self.sample_rate // self.hop_length


@dataclass(frozen=True)
class VAEConfig:
    """``AutoencoderKL`` ``ddconfig`` + ``embed_dim`` (both VAE copies use the same one)."""

    in_channels: int = 1
    out_ch: int = 1
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    z_channels: int = 16
    double_z: bool = True
    embed_dim: int = 16
    resolution: int = 256
    mel_bins: int = 256
    dropout: float = 0.0  # 0.1 upstream, inactive at inference

    @property
    def downsample_factor(self) -> int:
        """Time and frequency reduction from mel to latent (8 for four levels)."""
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class UNetConfig:
    """openaimodel ``UNetModel`` parameters used by AudioSR (spatial transformers, no context)."""

    in_channels: int = 32  # noisy latent (16) + concat condition (16)
    out_channels: int = 16
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 5)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8, 4, 2)
    num_head_channels: int = 32
    transformer_depth: int = 1
    extra_sa_layer: bool = True
    dropout: float = 0.0

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


@dataclass(frozen=True)
class VocoderConfig:
    """48 kHz HiFi-GAN generator (upstream ``get_vocoder_config_48k``, resblock type "1")."""

    num_mels: int = 256
    upsample_rates: tuple[int, ...] = (6, 5, 4, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (12, 10, 8, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11, 15)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5),) * 4

    @property
    def hop_length(self) -> int:
        """Samples per mel frame (product of the upsampling rates, 480)."""
        out = 1
        for r in self.upsample_rates:
            out *= r
        return out


@dataclass(frozen=True)
class DiffusionConfig:
    """DDPM schedule and parameterisation of the latent diffusion model."""

    timesteps: int = 1000
    beta_schedule: str = "cosine"
    cosine_s: float = 8e-3
    parameterization: str = "v"
    latent_channels: int = 16
    # VAEFeatureExtract's unconditional condition: a constant latent (before scale_factor).
    unconditional_value: float = -11.4981


@dataclass(frozen=True)
class AudioSRConfig:
    """The whole model: mel front end, two VAEs, UNet, vocoder and the diffusion schedule."""

    mel: MelConfig = field(default_factory=MelConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    @property
    def segment_frames(self) -> int:
        """Mel frames per 5.12 s block, the unit the original pads every input to (512)."""
        return 512

    @property
    def frame_multiple(self) -> int:
        """T must be a multiple of this for the VAE (8x) and UNet (8x more) to round-trip."""
        return self.vae.downsample_factor * self.unet.downsample_factor

    @classmethod
    def tiny(cls) -> AudioSRConfig:
        """The narrow variant of ``shared/golden`` (same keys, small widths) for tests."""
        return cls(
            vae=VAEConfig(ch=32, ch_mult=(1, 2, 1, 2)),
            unet=UNetConfig(model_channels=32, channel_mult=(1, 2, 1, 2)),
            vocoder=VocoderConfig(upsample_initial_channel=32),
        )

    @classmethod
    def from_original(cls, cfg: Mapping[str, Any]) -> AudioSRConfig:
        """Build from the original's nested config (``get_basic_config()`` layout).

        Accepts either the bare model config or a wrapper holding it under ``model_config``
        (as in ``shared/golden/tiny_config.json``); a vocoder config is read from
        ``vocoder_config_48k`` / ``vocoder_config`` when present.

        Raises:
            ValueError: when a required section is missing.
        """
        root = cfg.get("model_config", cfg)
        try:
            params = root["model"]["params"]
            ddconfig = params["first_stage_config"]["params"]["ddconfig"]
            embed_dim = params["first_stage_config"]["params"].get("embed_dim", 16)
            unet = params["unet_config"]["params"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "config is not in the original AudioSR layout: expected "
                "model.params.{first_stage_config.params.ddconfig, unet_config.params} "
                f"(missing {exc})"
            ) from None
        pre = root.get("preprocessing", {})
        mel = MelConfig(
            sample_rate=int(pre.get("audio", {}).get("sampling_rate", 48_000)),
            n_fft=int(pre.get("stft", {}).get("filter_length", 2048)),
            hop_length=int(pre.get("stft", {}).get("hop_length", 480)),
            win_length=int(pre.get("stft", {}).get("win_length", 2048)),
            n_mels=int(pre.get("mel", {}).get("n_mel_channels", 256)),
            f_min=float(pre.get("mel", {}).get("mel_fmin", 20)),
            f_max=float(pre.get("mel", {}).get("mel_fmax", 24_000)),
        )
        vae = VAEConfig(
            in_channels=int(ddconfig.get("in_channels", 1)),
            out_ch=int(ddconfig.get("out_ch", 1)),
            ch=int(ddconfig["ch"]),
            ch_mult=tuple(int(m) for m in ddconfig["ch_mult"]),
            num_res_blocks=int(ddconfig.get("num_res_blocks", 2)),
            attn_resolutions=tuple(int(r) for r in ddconfig.get("attn_resolutions", [])),
            z_channels=int(ddconfig.get("z_channels", 16)),
            double_z=bool(ddconfig.get("double_z", True)),
            embed_dim=int(embed_dim),
            resolution=int(ddconfig.get("resolution", 256)),
            mel_bins=int(ddconfig.get("mel_bins", 256)),
        )
        unet_cfg = UNetConfig(
            in_channels=int(unet.get("in_channels", 32)),
            out_channels=int(unet.get("out_channels", 16)),
            model_channels=int(unet["model_channels"]),
            channel_mult=tuple(int(m) for m in unet["channel_mult"]),
            num_res_blocks=int(unet.get("num_res_blocks", 2)),
            attention_resolutions=tuple(int(r) for r in unet.get("attention_resolutions", [])),
            num_head_channels=int(unet.get("num_head_channels", 32)),
            transformer_depth=int(unet.get("transformer_depth", 1)),
            extra_sa_layer=bool(unet.get("extra_sa_layer", True)),
        )
        diffusion = DiffusionConfig(
            timesteps=int(params.get("timesteps", 1000)),
            beta_schedule=str(params.get("beta_schedule", "cosine")),
            parameterization=str(params.get("parameterization", "v")),
            latent_channels=int(params.get("channels", 16)),
        )
        voc = cfg.get("vocoder_config_48k", cfg.get("vocoder_config", root.get("vocoder_config")))
        vocoder = VocoderConfig()
        if voc:
            vocoder = VocoderConfig(
                num_mels=int(voc.get("num_mels", 256)),
                upsample_rates=tuple(int(r) for r in voc["upsample_rates"]),
                upsample_kernel_sizes=tuple(int(k) for k in voc["upsample_kernel_sizes"]),
                upsample_initial_channel=int(voc["upsample_initial_channel"]),
                resblock_kernel_sizes=tuple(int(k) for k in voc["resblock_kernel_sizes"]),
                resblock_dilation_sizes=tuple(
                    tuple(int(d) for d in ds) for ds in voc["resblock_dilation_sizes"]
                ),
            )
        for name, value in (("beta_schedule", diffusion.beta_schedule),):
            if value != "cosine":
                raise ValueError(f"only the cosine {name} of AudioSR is supported, got {value!r}")
        if diffusion.parameterization != "v":
            raise ValueError(
                "only v-prediction is supported, got "
                f"parameterization={diffusion.parameterization!r}"
            )
        return cls(mel=mel, vae=vae, unet=unet_cfg, vocoder=vocoder, diffusion=diffusion)

    @classmethod
    def from_file(cls, path: str | Path) -> AudioSRConfig:
        """Read a config in the original's nested format from a YAML or JSON file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        if not isinstance(data, Mapping):
            raise ValueError(f"config file {path} does not hold a mapping")
        return cls.from_original(data)


BASIC = AudioSRConfig()
SPEECH = AudioSRConfig()  # same architecture as BASIC; only the weights differ

SamplerName = Literal["ddim", "dpmpp_2m", "unipc"]
Precision = Literal["fp32", "bf16", "fp16"]
AttentionBackend = Literal["math", "sdpa"]
FilterFamily = Literal["butter", "cheby1", "ellip", "bessel"]

# Allowed values, checked by SamplingOptions (errors list them).
SAMPLER_NAMES: tuple[str, ...] = ("ddim", "dpmpp_2m", "unipc")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
ATTENTION_BACKENDS: tuple[str, ...] = ("math", "sdpa")
FILTER_FAMILIES: tuple[str, ...] = ("butter", "cheby1", "ellip", "bessel")
# The networks of one diffusion run, in call order; each is a unit of precision, compilation
# and offload.
STAGES: tuple[str, ...] = ("encoder", "unet", "decoder", "vocoder")


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class SamplingOptions:
    """Runtime choices for one call; the defaults are the original CLI's.

    Attributes:
        steps: requested DDIM steps (the original runs ``ceil(1000 / (1000 // steps))``).
        guidance_scale: classifier-free guidance weight in v-space; 1.0 disables the
            unconditional pass.
        eta: DDIM stochasticity (1.0 in the original; 0.0 is deterministic DDIM). The ODE
            solvers are deterministic and do not use it.
        seed: seed of every random draw of the run.
        sampler: which solver visits the timesteps.
        precision: dtype of the UNet/VAE forward passes.
        attention: ``"math"`` (reference) or ``"sdpa"`` (fused) attention kernels.
        filter_family: low-pass family used to build the condition; None draws it from the
            seed exactly as the original does (numpy legacy RNG).
        batched_cfg: evaluate the conditional and unconditional halves of classifier-free
            guidance in one UNet call of batch 2B (True) or, as the original, in two calls of
            batch B (False; same result to rounding, slower).
        compile: run the networks through ``torch.compile`` (the first call of each stage
            compiles; later shapes reuse or generalise the compiled code, see
            ``engines/diffusion/compiled.py``).
        cuda_graphs: with ``compile`` on a CUDA device, replay the UNet as a CUDA graph
            (``mode="reduce-overhead"``); removes per-kernel launch cost.
        channels_last: keep the 2-D convolution weights and activations (UNet, VAEs) in
            NHWC memory order, which is what the fast CPU/GPU convolution kernels want.
        offload: keep the weights in host memory and move each stage (condition encoder,
            UNet, decoder, vocoder) to the device only while it runs, so GPU memory holds one
            stage at a time (for small GPUs; costs one host-to-device copy per stage and call).
        tf32: let CUDA fp32 matmuls and convolutions use TF32 tensor cores (10-bit mantissa
            products). The original CLI allows it; False keeps full fp32 ("highest"). No effect
            off CUDA. See the README's TF32 policy.
        half_stages: the stages that honour a half ``precision`` (all by default); the others
            run in fp32. A measurement knob (``bench_speed.py --stage-errors``).
    """

    steps: int = 50
    guidance_scale: float = 3.5
    eta: float = 1.0
    seed: int = 42
    sampler: SamplerName = "ddim"
    precision: Precision = "fp32"
    attention: AttentionBackend = "math"
    filter_family: FilterFamily | None = None
    batched_cfg: bool = True
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = False
    offload: bool = False
    tf32: bool = False
    half_stages: tuple[str, ...] = STAGES

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not self.guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if not self.eta >= 0:
            raise ValueError(f"eta must be >= 0 (0 deterministic, 1 the original), got {self.eta}")
        _one_of("sampler", self.sampler, SAMPLER_NAMES)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("attention", self.attention, ATTENTION_BACKENDS)
        if self.filter_family is not None:
            _one_of("filter_family", self.filter_family, FILTER_FAMILIES)
        for name in ("batched_cfg", "compile", "cuda_graphs", "channels_last", "offload", "tf32"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        unknown = [s for s in self.half_stages if s not in STAGES]
        if isinstance(self.half_stages, str) or unknown:
            raise ValueError(
                f"half_stages must be a tuple of {', '.join(STAGES)}; got {self.half_stages!r}"
            )
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs needs compile=True (torch.compile captures the graphs)")
        if self.cuda_graphs and self.offload:
            raise ValueError(
                "cuda_graphs cannot be combined with offload: a captured graph needs the weights "
                "to stay at fixed device addresses"
            )

    def replace(self, **changes: Any) -> SamplingOptions:
        return replace(self, **changes)


@dataclass(frozen=True)
class EngineSteps:
    """Which of the original's own steps the diffusion engine runs (all, by default).

    ``--preset upstream`` and the drop-in API keep every one: they are part of the original's
    numbers. The modern pipeline already low-passes at the detected band limit, keeps one gain
    per file and merges its own low band, so it may switch the engine's copies off.

    Attributes:
        simulate_lowpass: build the condition from the original's low-pass simulation of the
            input (spec §4); False conditions on the input as given (already band-limited).
        replace_mel_bins: replace the decoded mel's low bins by the condition's (spec §9.2).
        merge_low_band: the STFT-domain low-band merge after the vocoder (spec §9.4).
        peak_normalize: the engine adapter scales each row to peak 0.5 (the level the model was
            trained on) and back.
    """

    simulate_lowpass: bool = True
    replace_mel_bins: bool = True
    merge_low_band: bool = True
    peak_normalize: bool = True


ALL_STEPS = EngineSteps()  # the original's behaviour: every step on
# The real-world pipeline (audiosr.pipeline) pre-filters each channel at its band limit, sets
# one gain per file and keeps each channel's own low band: the engine's copies are off.
PIPELINE_STEPS = EngineSteps(
    simulate_lowpass=False, replace_mel_bins=False, merge_low_band=False, peak_normalize=False
)
