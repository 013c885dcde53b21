"""Real lossy codecs and resamplers as users meet them, for the envelope prior's data and tests.

Every codec runs the real command-line encoder (Debian: ``apt-get install lame ffmpeg
vorbis-tools opus-tools``) on 16-bit stereo PCM at 44.1 kHz, the form most music reaches a
user in (a mono clip is sent as two identical channels: the encoders then choose the
low-pass of a stereo stream, e.g. lame 128 kbps ~16.5 kHz, ffmpeg AAC 128 kbps ~17.2 kHz).
The decoded signal is brought back to 48 kHz (soxr, very high quality) and re-aligned
sample-exactly with the reference (:func:`audiosr.eval.degrade.estimate_delay`); its band
limit is measured with :func:`audiosr.eval.degrade.measure_cutoff_hz` (the cutoff
``audiosr eval`` reports for codecs). ``resample*`` kinds go down and up through a lower rate
(:mod:`audiosr.eval.degrade`'s ``resample``), ``soxr*`` kinds through soxr VHQ; both report half
that rate as their cutoff.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from audiosr.eval import degrade

SAMPLE_RATE = 48_000  # Hz
CODEC_RATE = 44_100  # Hz, the rate the encoders see

# kind -> (encoder command with {src} and {dst}, suffix of the coded file)
ENCODERS: dict[str, tuple[tuple[str, ...], str]] = {
    "lame128": (("lame", "--quiet", "-b", "128", "{src}", "{dst}"), ".mp3"),
    "lame160": (("lame", "--quiet", "-b", "160", "{src}", "{dst}"), ".mp3"),
    "lame192": (("lame", "--quiet", "-b", "192", "{src}", "{dst}"), ".mp3"),
    "lame-v2": (("lame", "--quiet", "-V", "2", "{src}", "{dst}"), ".mp3"),
    "aac96": (("ffmpeg", "-v", "error", "-y", "-i", "{src}", "-c:a", "aac", "-b:a", "96k",
               "{dst}"), ".m4a"),
    "aac128": (("ffmpeg", "-v", "error", "-y", "-i", "{src}", "-c:a", "aac", "-b:a", "128k",
                "{dst}"), ".m4a"),
    "aac160": (("ffmpeg", "-v", "error", "-y", "-i", "{src}", "-c:a", "aac", "-b:a", "160k",
                "{dst}"), ".m4a"),
    "vorbis-q2": (("oggenc", "-Q", "-q", "2", "-o", "{dst}", "{src}"), ".ogg"),
    "vorbis-q3": (("oggenc", "-Q", "-q", "3", "-o", "{dst}", "{src}"), ".ogg"),
    "vorbis-q5": (("oggenc", "-Q", "-q", "5", "-o", "{dst}", "{src}"), ".ogg"),
    "opus64": (("opusenc", "--quiet", "--bitrate", "64", "{src}", "{dst}"), ".opus"),
    "opus96": (("opusenc", "--quiet", "--bitrate", "96", "{src}", "{dst}"), ".opus"),
}
RESAMPLERS: dict[str, int] = {"resample32k": 32_000, "resample22k": 22_050}  # kind -> Hz
# The same rates through soxr VHQ (what audio_io, sox and most tools use): a sharp anti-alias
# filter with almost nothing left above the new Nyquist, where ``audiosr eval``'s polyphase
# resampler leaves an attenuated transition band (16-18.5 kHz at 32 kHz). Evaluation only.
SOXR_RESAMPLERS: dict[str, int] = {"soxr32k": 32_000, "soxr22k": 22_050}
KINDS = (*ENCODERS, *RESAMPLERS, *SOXR_RESAMPLERS)


def _run(cmd: list[str]) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    except FileNotFoundError as err:
        raise RuntimeError(f"{cmd[0]} not found: apt-get install lame ffmpeg vorbis-tools "
                           "opus-tools") from err
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.stderr.decode()[-300:]}") from err


def encode_decode(x: np.ndarray, kind: str) -> np.ndarray:
    """Code ``x`` ``[C, T]`` (48 kHz, C = 1 or 2) with the real encoder of ``kind``.

    Returns:
        The decoded signal ``[C, T]`` float64 at 48 kHz, aligned with ``x``.
    """
    cmd, suffix = ENCODERS[kind]
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    stereo = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x
    pcm = soxr.resample(stereo.T, SAMPLE_RATE, CODEC_RATE, quality="VHQ")  # [T', 2]
    with tempfile.TemporaryDirectory(prefix="dsp-prior-codec-") as tmp:
        src, dst, dec = (Path(tmp) / n for n in ("in.wav", f"coded{suffix}", "out.wav"))
        sf.write(src, np.clip(pcm, -1.0, 1.0), CODEC_RATE, subtype="PCM_16")
        _run([c.format(src=src, dst=dst) for c in cmd])
        _run(["ffmpeg", "-v", "error", "-y", "-i", str(dst), "-ar", str(CODEC_RATE), "-ac", "2",
              "-c:a", "pcm_f32le", str(dec)])
        y, rate = sf.read(dec, dtype="float64", always_2d=True)
    y = soxr.resample(y, rate, SAMPLE_RATE, quality="VHQ").T  # [2, T'']
    if x.shape[0] == 1:
        y = y.mean(axis=0, keepdims=True)
    delay = degrade.estimate_delay(y, x)
    y = y[:, delay:] if delay >= 0 else np.pad(y, ((0, 0), (-delay, 0)))
    if y.shape[1] < x.shape[1]:
        y = np.pad(y, ((0, 0), (0, x.shape[1] - y.shape[1])))
    return y[:, : x.shape[1]]


def degrade_real(x: np.ndarray, kind: str) -> tuple[np.ndarray, float]:
    """``(degraded [C, T] float64 at 48 kHz, cutoff Hz)`` for one of :data:`KINDS`."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if kind in RESAMPLERS:
        d = degrade.Degradation("resample", rate=RESAMPLERS[kind])
        y, cutoff = degrade.apply(d, torch.from_numpy(x))
        return y.numpy(), float(cutoff)
    if kind in SOXR_RESAMPLERS:
        rate = SOXR_RESAMPLERS[kind]
        low = soxr.resample(x.T, SAMPLE_RATE, rate, quality="VHQ")
        y = soxr.resample(low, rate, SAMPLE_RATE, quality="VHQ").T[:, : x.shape[1]]
        y = np.pad(y, ((0, 0), (0, x.shape[1] - y.shape[1])))
        return y, rate / 2
    if kind not in ENCODERS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    y = encode_decode(x, kind)
    return y, float(degrade.measure_cutoff_hz(y, SAMPLE_RATE))
