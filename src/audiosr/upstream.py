"""Drop-in replacements for the original package's Python API (``import audiosr``).

``build_model``, ``super_resolution``, ``super_resolution_long_audio``, ``save_wave`` and
``read_list`` keep the original's signatures and defaults, and by default give the original's
numbers for the same weights, input and seed (spec §8.6 draw order, seeded filter family, the
discarded first posterior draw, the extra draw on later calls of one model object). Deliberate
divergences, each a crash or a silent bug in the original, are listed in the README.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import AudioSRConfig
from .devices import resolve_device
from .dsp.frontend import normalize_and_pad, target_frames
from .dsp.gain import peak_normalize_final
from .dsp.lowpass import draw_filter_family
from .dsp.resample import resample_sinc
from .engines.diffusion import DiffusionRuntime, Generators, generate
from .presets import preset_options
from .weights import load_model

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000


@dataclass
class LatentDiffusion:
    """What :func:`build_model` returns: the runtime plus the original's call counter.

    The original consumes one extra random number on every ``generate_batch`` call after the
    first on the same model object (spec §8.6); ``calls`` lets us do the same.
    """

    runtime: DiffusionRuntime
    calls: int = field(default=0)

    @property
    def device(self) -> torch.device:
        return self.runtime.device


def build_model(
    ckpt_path: str | None = None,
    config: str | os.PathLike[str] | dict | AudioSRConfig | None = None,
    device: str | torch.device | None = None,
    model_name: str = "basic",
) -> LatentDiffusion:
    """Load an AudioSR model (original signature).

    Args:
        ckpt_path: local checkpoint (``.bin``/``.pt``/``.safetensors``); unlike the original,
            which ignored it, it is used when given.
        config: original-format config (YAML/JSON path or dict) or an :class:`AudioSRConfig`;
            default: the official architecture.
        device: ``None``/``"auto"`` picks cuda, then mps, then cpu.
        model_name: ``"basic"`` or ``"speech"`` (Hugging Face weights, cached after first use).
    """
    cfg = _as_config(config)
    dev = resolve_device(device)
    model = load_model(cfg, ckpt_path if ckpt_path else model_name, device=dev)
    return LatentDiffusion(runtime=DiffusionRuntime(model, cfg))


def _as_config(config: Any) -> AudioSRConfig:
    if config is None:
        return AudioSRConfig()
    if isinstance(config, AudioSRConfig):
        return config
    if isinstance(config, dict):
        return AudioSRConfig.from_original(config)
    return AudioSRConfig.from_file(config)


def read_audio_upstream(path: str | os.PathLike[str]) -> tuple[Tensor, float]:
    """Read channel 0 at 48 kHz as the original does (sinc resampler, spec §2.1/§2.3).

    Returns:
        (wave [L] float32 at 48 kHz, duration in seconds of the ORIGINAL file).
    """
    data, sr = _read_any(path)
    duration = data.shape[1] / sr
    wave = torch.from_numpy(np.ascontiguousarray(data[0]))
    return resample_sinc(wave, int(sr), SAMPLE_RATE), duration


def _read_any(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Every channel of a file as float32 ``[C, T]`` and its rate; any format we read
    (M4A/AAC too, through PyAV), any channel count, like the original's loader."""
    from .audio_io import read_audio

    return read_audio(path, max_channels=1 << 16)


def prepare_upstream_batch(wave: Tensor, duration_s: float) -> Tensor:
    """Normalise and pad one 48 kHz channel like ``read_wav_file`` (spec §2.2, §2.4).

    Returns:
        [1, L] float32, L = 480 * T with T a multiple of 512 frames.
    """
    frames = target_frames(duration_s)
    return normalize_and_pad(wave[None].float(), frames * 480)


def super_resolution(
    latent_diffusion: LatentDiffusion,
    input_file: str | os.PathLike[str],
    seed: int = 42,
    ddim_steps: int = 200,
    guidance_scale: float = 3.5,
    latent_t_per_second: float = 12.8,
    config: Any = None,
) -> np.ndarray:
    """Super-resolve one file exactly as the original (returns the padded output).

    ``latent_t_per_second`` and ``config`` are accepted and ignored, as in the original.

    Returns:
        float32 array [1, 1, 480 * T + 16] at 48 kHz (peak 0.5, mean removed, still padded).
    """
    del latent_t_per_second, config
    wave, duration = read_audio_upstream(input_file)
    padded = prepare_upstream_batch(wave, duration)
    out = _run_padded(latent_diffusion, padded, seed, ddim_steps, guidance_scale)
    return out[:, None].cpu().numpy()


def _run_padded(
    latent_diffusion: LatentDiffusion,
    padded: Tensor,
    seed: int,
    ddim_steps: int,
    guidance_scale: float,
    generators: Generators | None = None,
) -> Tensor:
    """The body of ``generate_batch`` for one padded batch [B, L] -> [B, 480T+16]."""
    runtime = latent_diffusion.runtime
    # The upstream preset (audiosr/presets.py): the original's sampler, fp32, math attention
    # and its TF32 setting on CUDA.
    options = preset_options(
        "upstream",
        runtime.device,
        steps=int(ddim_steps),
        guidance_scale=float(guidance_scale),
        seed=seed,
    )
    generators = generators or Generators.from_seed(seed, runtime.device)
    family = draw_filter_family(seed)
    with torch.inference_mode():
        result = generate(
            runtime,
            padded,
            options,
            family=family,
            generators=generators,
            first_call=latent_diffusion.calls == 0,
        )
    latent_diffusion.calls += 1
    return peak_normalize_final(result.wave)


def super_resolution_long_audio(
    latent_diffusion: LatentDiffusion,
    input_file: str | os.PathLike[str],
    seed: int = 42,
    ddim_steps: int = 200,
    guidance_scale: float = 3.5,
    chunk_duration_s: float = 15,
    overlap_duration_s: float = 2,
) -> Tensor:
    """The original's chunked path (spec §12.3), with its crash on a short last chunk fixed.

    Channels are averaged, each chunk goes through the normal pipeline and is rescaled to its
    input peak, and chunks are cross-faded with Hann halves. The random generators are seeded
    once for the whole file, as in the original.

    Returns:
        Tensor [1, L_in] at 48 kHz, clamped to [-1, 1].
    """
    if not overlap_duration_s >= 0:
        raise ValueError(f"overlap_duration_s must be >= 0 seconds, got {overlap_duration_s}")
    if not chunk_duration_s > overlap_duration_s:
        raise ValueError(
            f"chunk_duration_s ({chunk_duration_s}) must be longer than overlap_duration_s "
            f"({overlap_duration_s})"
        )
    chunk = int(chunk_duration_s * SAMPLE_RATE)
    overlap = int(overlap_duration_s * SAMPLE_RATE)
    if chunk <= overlap:  # both round down to whole samples
        raise ValueError("chunk_duration_s must be at least one sample longer than the overlap")
    data, sr = _read_any(input_file)
    wave = torch.from_numpy(data).mean(0)
    wave = resample_sinc(wave, int(sr), SAMPLE_RATE)
    total = wave.shape[-1]
    step = chunk - overlap
    out = torch.zeros(total)
    weight = torch.zeros(total)
    generators = Generators.from_seed(seed, latent_diffusion.device)
    for start in range(0, total, step):
        piece = wave[start : start + chunk]
        n = piece.shape[-1]
        peak = piece.abs().max() + 1e-8
        padded_in = torch.nn.functional.pad(piece, (0, chunk - n))
        padded = prepare_upstream_batch(padded_in, chunk / SAMPLE_RATE)
        y = _run_padded(latent_diffusion, padded, seed, ddim_steps, guidance_scale, generators)
        y = y[0, :n].cpu()
        y = y / (y.abs().max() + 1e-8) * peak
        fade = torch.ones(n)
        ov = min(overlap, n)
        if ov > 0:  # no overlap: chunks are butted together, nothing to fade
            ramp = torch.hann_window(2 * ov, periodic=False)
            if start > 0:
                fade[:ov] = ramp[:ov]
            if start + n < total:
                fade[n - ov :] = ramp[ov:]
        out[start : start + n] += y * fade
        weight[start : start + n] += fade
        if start + n >= total:
            break
    weight[weight == 0] = 1.0
    return (out / weight).clamp(-1.0, 1.0)[None]


def save_wave(
    waveform: np.ndarray | Tensor,
    inputpath: str | os.PathLike[str],
    savepath: str | os.PathLike[str],
    name: str | list[str] = "outwav",
    samplerate: int = 16000,
) -> list[Path]:
    """Write ``waveform`` [B, C, L] (or [B, L]) as 16-bit WAV trimmed to the input's duration.

    Unlike the original, this needs no ffmpeg, always adds ``.wav`` (the original dropped the
    extension of names containing ".wav") and writes atomically.

    Returns:
        The written paths.
    """
    from .audio_io import NAME_MAX, audio_info, fit_name, write_audio

    arr = waveform.detach().cpu().numpy() if isinstance(waveform, Tensor) else np.asarray(waveform)
    if arr.ndim == 2:
        arr = arr[:, None]
    names = name if isinstance(name, list) else [name] * arr.shape[0]
    duration = audio_info(inputpath).duration_s
    keep = int(round(duration * samplerate))
    os.makedirs(savepath, exist_ok=True)
    written = []
    for i in range(arr.shape[0]):
        stem = os.path.basename(str(names[i]))
        if stem.lower().endswith(".wav"):
            stem = stem[:-4]
        fname = f"{stem}_{i}.wav" if arr.shape[0] > 1 else f"{stem}.wav"
        short = fit_name(fname)  # the original also falls back to a hashed name
        if short != fname:
            log.warning("file name over %d bytes; saving as %s", NAME_MAX, short)
        dst = Path(savepath) / short
        write_audio(dst, arr[i][:, :keep], samplerate, subtype="PCM_16", protect=[Path(inputpath)])
        written.append(dst)
    log.info("saved %s", ", ".join(str(p) for p in written))
    return written


def read_list(fname: str | os.PathLike[str]) -> list[str]:
    """Read a list file: one path per line, surrounding blanks and blank lines dropped.

    A UTF-8 byte-order mark (Windows editors write one) is not part of the first path.
    """
    with open(fname, encoding="utf-8-sig") as f:
        return [line.strip() for line in f if line.strip()]
