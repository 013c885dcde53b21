"""The rest of the original package's namespace: its front-end and helper functions.

``from audiosr import seed_everything, get_time, read_list, make_batch_for_super_resolution``
works as with the original (``audiosr/utils.py`` and ``audiosr/pipeline.py`` there). Each name
keeps the original's signature, return types and shapes, and is built on the modules that do
the work here (:mod:`audiosr.dsp.frontend`, :mod:`audiosr.dsp.mel`, :mod:`audiosr.dsp.cutoff`,
:mod:`audiosr.dsp.lowpass`); none of our own code paths calls them. Divergences, as in
:mod:`audiosr.upstream`: inputs of any format we read (M4A through PyAV), the intended 512
frames for the sub-1.12 s lengths the original turns into 511 (spec §2.2), a near-silent input
left unfiltered instead of a crash (spec §4), and ``ValueError`` instead of an assertion for
inputs of 100 samples or fewer.
"""

from __future__ import annotations

import logging
import os
import random
import time
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import MelConfig
from .dsp.cutoff import cutoff_hz_from_stft
from .dsp.frontend import MIN_INPUT_SAMPLES, normalize_and_pad, pad_duration_s, target_frames
from .dsp.lowpass import FILTER_FAMILIES, simulate_lowpass
from .dsp.mel import MelFrontEnd, fit_frames

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000  # Hz


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators, as the original does.

    Also sets ``PYTHONHASHSEED`` (for child processes) and cuDNN's deterministic flag. Our
    own functions never need it: they draw from explicit generators built from their
    ``seed`` argument.
    """
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = True


def get_time() -> str:
    """Local time as ``DD_MM_YYYY_HH_MM_SS`` (the original's output sub-folder name)."""
    return time.strftime("%d_%m_%Y_%H_%M_%S", time.localtime())


def get_duration(fname: str | os.PathLike[str]) -> float:
    """Duration of an audio file in seconds, from its header (any format we read)."""
    from .audio_io import audio_info

    return audio_info(fname).duration_s


def normalize_wav(waveform: np.ndarray) -> np.ndarray:
    """Remove the mean, scale the peak to 0.5 (spec §2.4); same shape, float32."""
    x = np.asarray(waveform, dtype=np.float32)
    flat = torch.from_numpy(np.ascontiguousarray(x.reshape(1, -1)))
    return normalize_and_pad(flat, flat.shape[-1]).numpy().reshape(x.shape)


def pad_wav(waveform: np.ndarray, target_length: int) -> np.ndarray:
    """Zero-pad ``waveform`` ([L] or [1, L]) at the end to ``[1, target_length]`` float32.

    Returned unchanged when already ``target_length`` long, as in the original.

    Raises:
        ValueError: 100 samples or fewer, or longer than ``target_length``.
    """
    length = np.shape(waveform)[-1]
    if length < MIN_INPUT_SAMPLES:
        raise ValueError(f"waveform is too short: {length} samples (more than 100 needed)")
    if length == target_length:
        return waveform
    if length > target_length:
        raise ValueError(f"waveform has {length} samples, more than target {target_length}")
    out = np.zeros((1, target_length), dtype=np.float32)
    out[:, :length] = waveform
    return out


@lru_cache(maxsize=1)
def _frontend() -> MelFrontEnd:
    return MelFrontEnd(MelConfig())


def wav_feature_extraction(
    waveform: np.ndarray | Tensor, target_frame: int
) -> tuple[Tensor, Tensor]:
    """Log-mel and STFT magnitude of ``waveform[0]`` at 48 kHz, fitted to ``target_frame``.

    Returns:
        ``(log_mel [T, 256], stft [T, 1024])`` float32 tensors (spec §2.5-§2.6).
    """
    wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))[0].reshape(1, -1)
    with torch.inference_mode():
        log_mel, magnitude = _frontend()(wave)
        log_mel = fit_frames(log_mel, int(target_frame))
        magnitude = fit_frames(magnitude, int(target_frame))
    return log_mel[0].clone(), magnitude[0].clone()


def read_audio_file(
    filename: str | os.PathLike[str],
) -> tuple[Tensor, Tensor, np.ndarray, float, int]:
    """Read, resample (the original's sinc), normalise and pad channel 0 of a file.

    Returns:
        ``(log_mel [T, 256], stft [T, 1024], waveform [1, L] float32 numpy,
        padded duration in seconds, T)``, L = 480 * T: as the original, the duration is
        the padded one (a multiple of 5.12 s).
    """
    from .upstream import prepare_upstream_batch, read_audio_upstream

    wave, duration = read_audio_upstream(filename)
    padded = prepare_upstream_batch(wave, duration).numpy()
    frames = target_frames(duration)
    log_mel, stft = wav_feature_extraction(padded, frames)
    return log_mel, stft, padded, pad_duration_s(duration), frames


def lowpass_filtering_prepare_inference(dl_output: dict[str, Any]) -> dict[str, Tensor]:
    """The low-pass condition of one item (spec §3-§4).

    Args:
        dl_output: ``"waveform"`` [1, L] at 48 kHz (normalised), ``"stft"`` [T, 1024]
            magnitudes, ``"sampling_rate"``.

    Returns:
        ``{"waveform_lowpass": [1, L] float32}``. The filter family is drawn from numpy's
        global generator, like the original (after ``seed_everything(seed)`` it is the
        family :func:`~audiosr.dsp.lowpass.draw_filter_family` gives for ``seed``).
    """
    wave = torch.as_tensor(dl_output["waveform"], dtype=torch.float32).reshape(1, -1)
    _, cutoff_hz = cutoff_hz_from_stft(torch.as_tensor(dl_output["stft"], dtype=torch.float32))
    family = str(np.random.choice(FILTER_FAMILIES))
    rate = int(dl_output.get("sampling_rate", SAMPLE_RATE))
    return {"waveform_lowpass": simulate_lowpass(wave, float(cutoff_hz), family, sample_rate=rate)}


def make_batch_for_super_resolution(
    input_file: str | os.PathLike[str] | None, waveform: np.ndarray | None = None
) -> tuple[dict[str, Any], float]:
    """The original's model input for one file (or, with ``waveform``, a 48 kHz chunk).

    Args:
        input_file: audio file; ignored when ``waveform`` is given.
        waveform: [1, L] (or [L]) samples at 48 kHz, as the original's chunked path passes.

    Returns:
        ``(batch, duration)``: batch holds ``waveform`` and ``waveform_lowpass`` [1, 1, L],
        ``stft`` [1, T, 1024], ``log_mel_spec`` and ``lowpass_mel`` [1, T, 256] and
        ``sampling_rate`` 48000; duration is the padded duration for a file and the chunk's
        own duration for ``waveform``, as in the original.
    """
    if waveform is None:
        if input_file is None:
            raise ValueError("give input_file or waveform")
        log_mel, stft, wave, duration, frames = read_audio_file(input_file)
    else:
        chunk = np.asarray(waveform, dtype=np.float32).reshape(1, -1)
        duration = chunk.shape[-1] / SAMPLE_RATE
        frames = target_frames(duration)
        wave = pad_wav(normalize_wav(chunk), frames * MelConfig().hop_length)
        log_mel, stft = wav_feature_extraction(wave, frames)
    batch: dict[str, Any] = {
        "waveform": torch.from_numpy(np.asarray(wave, dtype=np.float32)),
        "stft": stft,
        "log_mel_spec": log_mel,
        "sampling_rate": SAMPLE_RATE,
    }
    batch.update(lowpass_filtering_prepare_inference(batch))
    batch["lowpass_mel"], _ = wav_feature_extraction(batch["waveform_lowpass"], frames)
    for key, value in batch.items():
        if isinstance(value, Tensor):
            batch[key] = value.float().unsqueeze(0)
    return batch, duration
