"""Assemble $DSP_PRIOR_WORK/corpus_v1/<kind>/<name>.wav: mono 48 kHz clips of at most 6 s.

Sources: the installed Debian packages alsa-utils, ktuberling, pingus, frozen-bubble,
extremetuxracer, sound-theme-freedesktop, oxygen-sounds, and fluidsynth renders
(fluid-soundfont-gm) of the project-written MIDI files of make_midi.py in raw/music.
The packages are read under $DSP_PRIOR_ROOT (default: the installed system, "/"); e.g.
``dpkg-deb -x <package>_*.deb $DSP_PRIOR_ROOT`` for each of them.
"""

import glob
import os
import random

import numpy as np
import soundfile as sf
import soxr

rng = random.Random(3)
WORK = os.environ.get("DSP_PRIOR_WORK", "/tmp/dsp_prior")
OUT = f"{WORK}/corpus_v1"
ROOT = os.environ.get("DSP_PRIOR_ROOT", "/").rstrip("/")
MAX = 6 * 48000


def load(path):
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != 48000:
        x = soxr.resample(x, sr, 48000, quality="VHQ")
    return x


def save(kind, name, x):
    if len(x) < 4800 or np.abs(x).max() < 1e-3:
        return
    # loudest 6 s window
    if len(x) > MAX:
        c = np.concatenate([[0], np.cumsum(x**2)])
        e = (c[48000:] - c[:-48000])[::4800]
        i = int(np.argmax(np.convolve(e, np.ones(5), "same"))) * 4800
        s = max(0, min(len(x) - MAX, i - MAX // 2))
        x = x[s : s + MAX]
    x = 0.7 * x / np.abs(x).max()
    os.makedirs(f"{OUT}/{kind}", exist_ok=True)
    sf.write(f"{OUT}/{kind}/{name}.wav", x.astype(np.float32), 48000, subtype="FLOAT")


def concat(paths, gap=0.15):
    parts = []
    for p in paths:
        y = load(p)
        y = y / (np.abs(y).max() + 1e-9)
        parts += [y, np.zeros(int(gap * 48000))]
    return np.concatenate(parts)


# speech
alsa = sorted(p for p in glob.glob(f"{ROOT}/usr/share/sounds/alsa/*.wav") if "Noise" not in p)
save("speech", "alsa_a", concat(alsa[:4]))
save("speech", "alsa_b", concat(alsa[4:]))
kt = sorted(glob.glob(f"{ROOT}/usr/share/ktuberling/sounds/*/*.ogg"))
langs = sorted({p.split("/")[-2] for p in kt})
for lang in rng.sample(langs, 8):
    files = [p for p in kt if p.split("/")[-2] == lang]
    save("speech", f"ktuberling_{lang}", concat(rng.sample(files, min(5, len(files)))))
pv = [
    f"{ROOT}/usr/share/games/pingus/data/sounds/{n}.wav"
    for n in ("letsgo", "yipee", "ohno", "goodidea")
]
save("speech", "pingus_voice", concat(pv))
for p in glob.glob(f"{WORK}/raw/speech/*.wav"):
    save("speech_synth", os.path.basename(p)[:-4], load(p))
# music
for p in glob.glob(f"{WORK}/raw/music/*.wav"):
    save("music", "fluid_" + os.path.basename(p)[:-4], load(p))
for n in ("frozen-mainzik-1p", "frozen-mainzik-2p", "introzik"):
    save("music", "fb_" + n, load(f"{ROOT}/usr/share/games/frozen-bubble/snd/{n}.ogg"))
for p in sorted(glob.glob(f"{ROOT}/usr/share/games/etr/music/*.ogg"))[:4]:
    save("music", "etr_" + os.path.basename(p)[:-4], load(p))
# other sounds
fd = sorted(glob.glob(f"{ROOT}/usr/share/sounds/freedesktop/stereo/*.oga"))
for p in rng.sample(fd, 8):
    save("other", "fd_" + os.path.basename(p)[:-4], load(p))
ox = sorted(glob.glob(f"{ROOT}/usr/share/sounds/Oxygen-*.ogg"))
for p in rng.sample(ox, 8):
    save("other", "ox_" + os.path.basename(p)[:-4], load(p))
for n in ("applause", "destroy_group", "launch", "rebound", "snore", "typewriter", "newroot"):
    save("other", "fb_" + n, load(f"{ROOT}/usr/share/games/frozen-bubble/snd/{n}.ogg"))
for p in sorted(glob.glob(f"{ROOT}/usr/share/games/etr/sounds/*.wav")):
    save("other", "etr_" + os.path.basename(p)[:-4], load(p))
for n in ("splash", "chink", "digger", "plop"):
    save("other", "pingus_" + n, load(f"{ROOT}/usr/share/games/pingus/data/sounds/{n}.wav"))
