"""Write the 15 held-out evaluation references of README "Held-out evaluation set".

Sources: the Debian packages marsshooter-data, redeclipse-data, freeorion-data, flare-game and
csound-doc unpacked under ``DEB`` (``apt-get download P && dpkg-deb -x P_*.deb DEB/P``). Each
reference keeps its rate and channels; it is cut to at most 10 s from the listed start.
``FULL_BAND`` adds 14 more references of these packages whose own band reaches 20 kHz (under
``OUT/extra``). These packages are used for evaluation only, never for fitting or tuning.

usage: python tools/dsp_prior/heldout_refs.py DEB OUT
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np
import soundfile as sf

G = "usr/share/games"
REFS = (  # (output name, package, path inside the package, start s)
    ("music/marsshooter_fear", "marsshooter-data",
     f"{G}/marsshooter/audio/music/03_fear.ogg", 240),
    ("music/marsshooter_vermocsar", "marsshooter-data",
     f"{G}/marsshooter/audio/music/07_-_Vermocsar.ogg", 0),
    ("music/marsshooter_misanthropia", "marsshooter-data",
     f"{G}/marsshooter/audio/music/12_-_Misanthropia.ogg", 20),
    ("music/redeclipse_track05", "redeclipse-data",
     f"{G}/redeclipse/data/sounds/music/track_05.ogg", 80),
    ("music/redeclipse_track06", "redeclipse-data",
     f"{G}/redeclipse/data/sounds/music/track_06.ogg", 50),
    ("music/redeclipse_track09", "redeclipse-data",
     f"{G}/redeclipse/data/sounds/music/track_09.ogg", 110),
    ("effects/freeorion_starlane1a", "freeorion-data",
     f"{G}/freeorion/default/data/sound/combat/starlane1a.ogg", 0),
    ("effects/freeorion_laser_blaster3", "freeorion-data",
     f"{G}/freeorion/default/data/sound/combat/laser-blaster3.ogg", 0),
    ("effects/redeclipse_lava1", "redeclipse-data",
     f"{G}/redeclipse/data/sounds/ambience/lava1.ogg", 0),
    ("effects/redeclipse_rain", "redeclipse-data",
     f"{G}/redeclipse/data/sounds/ambience/morph/rain.ogg", 0),
    ("effects/redeclipse_machine13", "redeclipse-data",
     f"{G}/redeclipse/data/sounds/ambience/morph/machine13.ogg", 0),
    ("effects/redeclipse_waterfall_huge", "redeclipse-data",
     f"{G}/redeclipse/data/sounds/ambience/waterfall_huge.ogg", 0),
    ("effects/flare_shock", "flare-game",
     f"{G}/flare/mods/fantasycore/soundfx/powers/shock.ogg", 0),
    ("speech/csound_fox", "csound-doc", "usr/share/doc/csound-doc/html/examples/fox.wav.gz", 0),
)
# More references from the same five packages whose own band reaches 20 kHz (measure_cutoff_hz
# on 10 s), for the codec evaluation (codec_eval.py --min-edge-hz 20000): written under extra/.
C = "usr/share/doc/csound-doc/html/examples"
R = f"{G}/redeclipse/data/sounds"
F = f"{G}/freeorion/default/data/sound/combat"
FULL_BAND = (
    ("extra/music/flare_forest_theme", "flare-game",
     f"{G}/flare/mods/fantasycore/music/forest_theme.ogg", 30),
    ("extra/music/csound_oboe", "csound-doc", f"{C}/oboe.aiff.gz", 0),
    ("extra/music/csound_flutec3", "csound-doc", f"{C}/flutec3.wav.gz", 0),
    ("extra/music/csound_marimba", "csound-doc", f"{C}/marimba.aif.gz", 0),
    ("extra/music/csound_sing", "csound-doc", f"{C}/sing.wav.gz", 0),
    ("extra/speech/csound_mathews", "csound-doc", f"{C}/Mathews.wav.gz", 0),
    ("extra/effects/redeclipse_stormbolts", "redeclipse-data",
     f"{R}/ambience/morph/stormbolts.ogg", 20),
    ("extra/effects/redeclipse_wastewind", "redeclipse-data", f"{R}/ambience/wastewind.ogg", 10),
    ("extra/effects/redeclipse_distant_cars", "redeclipse-data",
     f"{R}/ambience/distant_cars.ogg", 5),
    ("extra/effects/redeclipse_burnfire", "redeclipse-data", f"{R}/sfx/burnfire.ogg", 0),
    ("extra/effects/freeorion_explosion_light1", "freeorion-data",
     f"{F}/explosion-light1.ogg", 0),
    ("extra/effects/freeorion_missile_destruct", "freeorion-data",
     f"{F}/missile-destruct.ogg", 0),
    ("extra/effects/flare_rain", "flare-game",
     f"{G}/flare/mods/empyrean_campaign/soundfx/environment/rain.ogg", 10),
    ("extra/effects/flare_anvil_loop", "flare-game",
     f"{G}/flare/mods/fantasycore/soundfx/environment/anvil_loop.ogg", 0),
)
MERCHANTS = f"{G}/flare/mods/fantasycore/soundfx/npcs/male_merchant_0{{}}.ogg"
MAX_S = 10.0


def _read(path: Path) -> tuple[np.ndarray, int]:
    if path.suffix == ".gz":
        with gzip.open(path) as f:
            return sf.read(io.BytesIO(f.read()), dtype="float32", always_2d=True)
    return sf.read(path, dtype="float32", always_2d=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deb", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    clips = []
    for name, package, rel, start in (*REFS, *FULL_BAND):
        x, sr = _read(args.deb / package / rel)
        clips.append((name, x[int(start * sr) : int((start + MAX_S) * sr)], sr))
    parts, rate = [], 44_100
    for k in range(1, 5):
        x, rate = _read(args.deb / "flare-game" / MERCHANTS.format(k))
        parts += [x, np.zeros((int(0.2 * rate), x.shape[1]), np.float32)]
    clips.append(("speech/flare_male_merchants", np.concatenate(parts)[: int(MAX_S * rate)], rate))
    for name, x, sr in clips:
        dst = args.out / f"{name}.wav"
        dst.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dst, x, sr, subtype="FLOAT")
        print(dst, sr, x.shape)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
