"""Regenerate the bundled example inputs (all made by this project; see SOURCES.md).

Needs: espeak-ng, fluidsynth and the FluidR3_GM soundfont (Debian: espeak-ng fluidsynth
fluid-soundfont-gm), plus the package itself (soundfile, soxr, numpy, scipy).

    python examples/make_examples.py
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

HERE = Path(__file__).resolve().parent
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SENTENCE = (
    "Audio super resolution restores the high frequencies of a recording. "
    "This example was spoken by a speech synthesizer and stored at eight kilohertz."
)


def make_speech(dst: Path) -> None:
    """espeak-ng speech, resampled to 8 kHz (telephone band, content up to ~3.8 kHz)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SENTENCE],
                       check=True)
        x, sr = sf.read(wav, dtype="float32")
    y = soxr.resample(x, sr, 8000, quality="VHQ")
    y = 0.7 * y / np.abs(y).max()
    sf.write(dst, y, 8000, subtype="PCM_16", format="FLAC")


def _midi_file(notes: list[tuple[int, int, int, int]], program: int, bpm: int = 100) -> bytes:
    """A one-track Standard MIDI File. notes: (start tick, length ticks, pitch, velocity)."""
    tpq = 480
    events: list[tuple[int, bytes]] = [(0, bytes([0xC0, program]))]
    for start, length, pitch, vel in notes:
        events.append((start, bytes([0x90, pitch, vel])))
        events.append((start + length, bytes([0x80, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1][0] == 0x90))
    tempo = 60_000_000 // bpm
    body = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
    now = 0
    for tick, msg in events:
        delta = tick - now
        now = tick
        var = [delta & 0x7F]
        delta >>= 7
        while delta:
            var.insert(0, (delta & 0x7F) | 0x80)
            delta >>= 7
        body += bytes(var) + msg
    body += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq)
    return header + b"MTrk" + struct.pack(">I", len(body)) + body


def make_music(dst: Path) -> None:
    """A short piano phrase (FluidR3_GM, MIT) rendered with fluidsynth, coded as 64 kbit/s MP3."""
    q = 480
    chords = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]
    melody = [72, 71, 69, 67, 65, 67, 69, 71, 72, 74, 76, 74, 72, 71, 72, 67]
    notes = []
    for bar, chord in enumerate(chords):
        for p in chord:
            notes.append((bar * 4 * q, 4 * q - 20, p - 12, 70))
    for i, p in enumerate(melody):
        notes.append((i * q, q - 30, p, 90))
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "phrase.mid"
        wav = Path(tmp) / "phrase.wav"
        mid.write_bytes(_midi_file(notes, program=0))
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.8", "-r", "44100", "-F", str(wav),
                        str(SOUNDFONT), str(mid)], check=True, capture_output=True)
        x, sr = sf.read(wav, dtype="float32")
    x = x[: int(sr * 10.5)]
    x = 0.8 * x / np.abs(x).max()
    # Low bit rate MP3: its encoder low-passes and leaves "spectral holes" near the cutoff.
    sf.write(dst, x, sr, format="MP3", subtype="MPEG_LAYER_III", compression_level=0.9,
             bitrate_mode="CONSTANT")


def make_effect(dst: Path) -> None:
    """Synthetic door knock + bell, 22.05 kHz Vorbis (content below ~10 kHz)."""
    sr = 22050
    rng = np.random.default_rng(7)
    t = np.arange(int(sr * 3.0)) / sr
    y = np.zeros_like(t)
    for k, start in enumerate((0.2, 0.45, 0.7)):
        n = int(0.08 * sr)
        burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.012 * sr))
        b, a = signal.butter(2, [120 / (sr / 2), 1800 / (sr / 2)], btype="band")
        s = int(start * sr)
        y[s : s + n] += (1.0 - 0.1 * k) * signal.lfilter(b, a, burst)
    s = int(1.2 * sr)
    tb = t[: len(t) - s]
    bell = sum(a * np.sin(2 * np.pi * f * tb) * np.exp(-tb / d)
               for f, a, d in ((880, 1.0, 0.9), (2210, 0.5, 0.5), (3960, 0.3, 0.3),
                               (6120, 0.2, 0.2), (8350, 0.1, 0.15)))
    y[s:] += 0.6 * bell
    b, a = signal.butter(8, 9500 / (sr / 2))
    y = signal.filtfilt(b, a, y)
    y = 0.8 * y / np.abs(y).max()
    sf.write(dst, y.astype(np.float32), sr, format="OGG", subtype="VORBIS")


def main() -> None:
    make_speech(HERE / "speech_8k.flac")
    make_music(HERE / "piano_mp3_64k.mp3")
    make_effect(HERE / "knock_bell_22k.ogg")
    for p in sorted(HERE.glob("*.*")):
        if p.suffix != ".py" and p.suffix != ".md":
            print(p.name, p.stat().st_size, "bytes", sf.info(p).samplerate, "Hz")


if __name__ == "__main__":
    main()
