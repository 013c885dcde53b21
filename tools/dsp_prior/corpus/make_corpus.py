"""Build $DSP_PRIOR_WORK/corpus/<kind>/<package>__<name>.wav (mono 48 kHz float, <= 6 s, peak 0.7).

Sources (all Debian bookworm packages, fetched with `apt-get download` and unpacked with
`dpkg-deb -x` into $DSP_PRIOR_WORK/deb/x/<package>):
hedgewars-data, supertux-data, lincity-ng-data, xmoto-data, openarena-data (sounds inside the
.pk3 zip files), gcompris-qt-data (Ogg streams carved out of the Qt .rcc resource files),
colobot-common-sounds, hyperrogue-music, drascula-music, caveexpress-data, bucklespring-data,
bzflag-data, freedink-data, fillets-ng-data (English voice lines),
plus the 64 clips of the older corpus $DSP_PRIOR_WORK/corpus_v1 (make_corpus_v1.py:
alsa-utils, ktuberling, pingus,
frozen-bubble, extremetuxracer, sound-theme-freedesktop, oxygen-sounds, fluidsynth renders).
Only sources recorded at >= 44.1 kHz are used from the new packages. Writes manifest.csv
(kind, package, clip, source). Deterministic (fixed seeds, sorted listings).
"""

import csv
import glob
import os
import random
import shutil
import zipfile

import numpy as np
import soundfile as sf
import soxr

WORK = os.environ.get("DSP_PRIOR_WORK", "/tmp/dsp_prior")
X = f"{WORK}/deb/x"  # apt-get download P && dpkg-deb -x P_*.deb $X/P
OUT = f"{WORK}/corpus"
OLD_CORPUS = f"{WORK}/corpus_v1"  # written by make_corpus_v1.py
MAX = 6 * 48000
rng = random.Random(11)
rows = []


def load(src):
    x, sr = sf.read(src, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != 48000:
        x = soxr.resample(x, sr, 48000, quality="VHQ")
    return x, sr


def sr_of(src):
    try:
        return sf.info(src).samplerate
    except Exception:
        return 0


def save(kind, pkg, name, x, src):
    if len(x) < 9600 or np.abs(x).max() < 1e-3:
        return
    if len(x) > MAX:  # loudest 6 s window
        c = np.concatenate([[0], np.cumsum(x**2)])
        e = (c[48000:] - c[:-48000])[::4800]
        i = int(np.argmax(np.convolve(e, np.ones(5), "same"))) * 4800
        s = max(0, min(len(x) - MAX, i - MAX // 2))
        x = x[s : s + MAX]
    x = 0.7 * x / np.abs(x).max()
    os.makedirs(f"{OUT}/{kind}", exist_ok=True)
    clip = f"{pkg}__{name}".replace(" ", "_")
    sf.write(f"{OUT}/{kind}/{clip}.wav", x.astype(np.float32), 48000, subtype="FLOAT")
    rows.append((kind, pkg, clip, src))


def concat(srcs, gap=0.15):
    parts = []
    for p in srcs:
        y, _ = load(p)
        parts += [y / (np.abs(y).max() + 1e-9), np.zeros(int(gap * 48000))]
    return np.concatenate(parts)


def pick(paths, n):
    paths = sorted(p for p in paths if sr_of(p) >= 44100)
    return paths if len(paths) <= n else sorted(rng.sample(paths, n))


def stem(p):
    return os.path.splitext(os.path.basename(p))[0]


# hedgewars-data: one speech clip per voice (5 words), music, effects
hw = f"{X}/hedgewars-data/usr/share/games/hedgewars/Data"
for v in sorted(glob.glob(f"{hw}/Sounds/voices/*")):
    ws = pick(glob.glob(f"{v}/*.ogg"), 5)
    if ws:
        save("speech", "hedgewars-data", "voice_" + os.path.basename(v), concat(ws), v)
for p in pick(glob.glob(f"{hw}/Music/*.ogg"), 12):
    save("music", "hedgewars-data", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{hw}/Sounds/*.ogg"), 16):
    save("other", "hedgewars-data", stem(p), load(p)[0], p)
# supertux-data
st = f"{X}/supertux-data/usr/share/games/supertux2"
for p in pick(glob.glob(f"{st}/music/*/*.ogg"), 14):
    save("music", "supertux-data", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{st}/sounds/*.*"), 16):
    save("other", "supertux-data", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{st}/speech/*.ogg"), 4):
    save("speech", "supertux-data", stem(p), load(p)[0], p)
# lincity-ng-data, xmoto-data
lc = f"{X}/lincity-ng-data/usr/share/games/lincity-ng"
for p in pick(glob.glob(f"{lc}/music/*/*.ogg"), 3):
    save("music", "lincity-ng-data", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{lc}/sounds/*.*"), 10):
    save("other", "lincity-ng-data", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{X}/xmoto-data/usr/share/games/xmoto/Textures/Musics/*.ogg"), 7):
    save("music", "xmoto-data", stem(p), load(p)[0], p)
# openarena-data: sounds inside pk3 zips
tmp = f"{WORK}/deb/oa"
os.makedirs(tmp, exist_ok=True)
for pk in sorted(glob.glob(f"{X}/openarena-data/usr/share/games/openarena/*/*.pk3")):
    z = zipfile.ZipFile(pk)
    for i in z.infolist():
        if i.filename.lower().endswith((".wav", ".ogg")) and i.filename.startswith("sound/"):
            dst = f"{tmp}/{i.filename.replace('/', '_')}"
            with open(dst, "wb") as f:
                f.write(z.read(i))
oa = glob.glob(f"{tmp}/*")
for voice in ("festivoxmale", "rott"):
    ws = pick([p for p in oa if f"voices_{voice}" in p], 5)
    if ws:
        save("speech", "openarena-data", "voice_" + voice, concat(ws), voice)
for p in pick([p for p in oa if "voices_" not in p], 20):
    save("other", "openarena-data", stem(p), load(p)[0], p)


# gcompris-qt-data: carve complete Ogg streams (BOS page .. EOS page) out of .rcc files
def carve(blob):
    out, i = [], 0
    while True:
        i = blob.find(b"OggS", i)
        if i < 0:
            return out
        if blob[i + 5] & 2:  # beginning of stream
            j = i
            while blob[j : j + 4] == b"OggS":
                nseg = blob[j + 26]
                size = 27 + nseg + sum(blob[j + 27 : j + 27 + nseg])
                eos = blob[j + 5] & 4
                j += size
                if eos:
                    out.append(blob[i:j])
                    break
            i = max(j, i + 4)
        else:
            i += 4


gdir = f"{X}/gcompris-qt-data/usr/share/gcompris-qt/rcc"
gc = f"{WORK}/deb/gc"
os.makedirs(gc, exist_ok=True)
for name, kind, n in (
    ("instruments", "music", 8),
    ("explore_world_music", "music", 8),
    ("memory-sound", "other", 8),
    ("explore_farm_animals", "other", 6),
):
    path = f"{gdir}/{name}.rcc"
    if not os.path.exists(path):
        continue
    for k, s in enumerate(carve(open(path, "rb").read())):
        with open(f"{gc}/{name}_{k:03d}.ogg", "wb") as f:
            f.write(s)
    for p in pick(glob.glob(f"{gc}/{name}_*.ogg"), n):
        save(kind, "gcompris-qt-data", stem(p), load(p)[0], p)


# second batch of packages
cb = f"{X}/colobot-common-sounds/usr/share/games/colobot"
for p in pick(glob.glob(f"{cb}/music/*.*"), 10):
    save("music", "colobot-common-sounds", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{cb}/sounds/*.*"), 12):
    save("other", "colobot-common-sounds", stem(p), load(p)[0], p)
hr = f"{X}/hyperrogue-music/usr/share/hyperrogue"
for p in pick(glob.glob(f"{hr}/music/*.*"), 10):
    save("music", "hyperrogue-music", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{hr}/sounds/*.*"), 12):
    save("other", "hyperrogue-music", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{X}/drascula-music/usr/share/scummvm/drascula/audio/*.ogg"), 10):
    save("music", "drascula-music", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{X}/caveexpress-data/usr/share/games/caveexpress/sounds/*.*"), 12):
    save("other", "caveexpress-data", stem(p), load(p)[0], p)
bs = pick(glob.glob(f"{X}/bucklespring-data/usr/share/buckle/wav/*.wav"), 48)
for k in range(6):
    save("other", "bucklespring-data", f"keys_{k}", concat(bs[k::6], gap=0.05), "bucklespring wav")
for p in pick(glob.glob(f"{X}/bzflag-data/**/*.wav", recursive=True), 6):
    save("other", "bzflag-data", stem(p), load(p)[0], p)
for p in pick(glob.glob(f"{X}/freedink-data/**/*.*", recursive=True), 6):
    save("other", "freedink-data", stem(p), load(p)[0], p)
fl = pick(glob.glob(f"{X}/fillets-ng-data/usr/share/games/fillets-ng/sound/*/en/*.ogg"), 48)
for k in range(12):
    save("speech", "fillets-ng-data", f"lines_{k}", concat(fl[k::12]), "fillets-ng en")

# the older corpus, with its packages
OLD = {
    "alsa": "alsa-utils",
    "ktuberling": "ktuberling",
    "pingus": "pingus",
    "fluid": "fluidsynth-gm",
    "fb": "frozen-bubble",
    "etr": "extremetuxracer",
    "fd": "sound-theme-freedesktop",
    "ox": "oxygen-sounds",
}
for kind in ("speech", "music", "other"):
    for p in sorted(glob.glob(f"{OLD_CORPUS}/{kind}/*.wav")):
        pkg = OLD[stem(p).split("_")[0]]
        clip = f"{pkg}__{stem(p)}"
        os.makedirs(f"{OUT}/{kind}", exist_ok=True)
        shutil.copy(p, f"{OUT}/{kind}/{clip}.wav")
        rows.append((kind, pkg, clip, p))

with open(f"{OUT}/manifest.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["kind", "package", "clip", "source"])
    w.writerows(rows)
print(len(rows), "clips")
