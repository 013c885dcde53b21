"""Write ``tests/data/detector_spectra.npz``: long-term spectra of real recordings for the
band-limit detector's regression tests (the spectra, not the audio).

Each case is the detector's own long-term spectrum
(:func:`audiosr.dsp.bandwidth.long_term_spectrum`) of a real file, stored as float16 dB
relative to its loudest bin (``<case>__db``) with its sample rate (``<case>__sr``). Coded and
resampled cases also store the coder's cutoff in Hz (``<case>__cut``), measured here from the
coded and the original spectra: the highest frequency where the coded spectrum (running
median over 250 Hz) lies no more than 20 dB below the original's and within 80 dB of the
original's loudest bin, below the original's own edge (the highest frequency where the
original lies within 80 dB of its loudest bin).

Sources (Debian packages, see tests/data/README.md): ``xmoto-data``, ``fillets-ng-data``,
``alsa-utils``; the coders are Debian's
``lame``, ``ffmpeg`` and ``sox``. Re-run with:

    apt-get install xmoto-data fillets-ng-data alsa-utils lame ffmpeg sox
    python tools/detector_spectra.py tests/data/detector_spectra.npz
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from audiosr.audio_io import resample  # noqa: E402
from audiosr.dsp.bandwidth import long_term_spectrum  # noqa: E402

XMOTO = Path("/usr/share/games/xmoto/Textures/Musics")
FILLETS = Path("/usr/share/games/fillets-ng/sound")
ALSA = Path("/usr/share/sounds/alsa")
# (case, source file, how: "mono48" = the protocol (mono mix at 48 kHz, whole file),
# "native" = all channels at the file's rate, or a coder applied to the native file)
CASES = [
    ("xmoto_MadeiraStew_mono48", XMOTO / "MadeiraStew.ogg", "mono48"),
    ("xmoto_legolodio_mono48", XMOTO / "legolodio.ogg", "mono48"),
    ("xmoto_batcave_mono48", XMOTO / "batcave.ogg", "mono48"),
    ("xmoto_ridealong_mono48", XMOTO / "ridealong.ogg", "mono48"),
    ("xmoto_MadeiraStew_native", XMOTO / "MadeiraStew.ogg", "native"),
    ("xmoto_legolodio_native", XMOTO / "legolodio.ogg", "native"),
    ("xmoto_batcave_native", XMOTO / "batcave.ogg", "native"),
    ("xmoto_ridealong_native", XMOTO / "ridealong.ogg", "native"),
    ("xmoto_menu_native", XMOTO / "menu.ogg", "native"),
    ("xmoto_foxrun_mp3_128", XMOTO / "foxrun.ogg", "mp3-128"),
    ("xmoto_legolodio_aac_128", XMOTO / "legolodio.ogg", "aac-128"),
    ("xmoto_MadeiraStew_rs16k", XMOTO / "MadeiraStew.ogg", "rs-16k"),
    ("fillets_speech_native", FILLETS / "bathroom/en/br-x-pracka.ogg", "native"),
    ("fillets_speech_mp3_128", FILLETS / "bathroom/en/br-x-pracka.ogg", "mp3-128"),
    # A filter's skirt the detector reads at its start (its -20 dB point, where the model would
    # regenerate) while content goes on 60-80 dB down for another 2-4 kHz: the pipeline must
    # keep that content (tests/test_keep_real.py).
    ("skirt_alsa_noise_native", ALSA / "Noise.wav", "native"),
    ("skirt_alsa_front_center_native", ALSA / "Front_Center.wav", "native"),
]


def _code(how: str, x: np.ndarray, sr: int, work: Path) -> np.ndarray:
    """``x`` [T, C] through the coder ``how``; returns the decoded [T, C] at ``sr``."""
    src, out = work / "in.wav", work / "out.wav"
    sf.write(str(src), x, sr, subtype="FLOAT")
    if how == "mp3-128":
        subprocess.run(["lame", "--quiet", "-b", "128", str(src), str(work / "a.mp3")], check=True)
        subprocess.run(["lame", "--quiet", "--decode", str(work / "a.mp3"), str(out)], check=True)
    elif how == "aac-128":
        for cmd in (["-i", str(src), "-c:a", "aac", "-b:a", "128k", str(work / "a.m4a")],
                    ["-i", str(work / "a.m4a"), "-c:a", "pcm_f32le", str(out)]):  # fmt: skip
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *cmd], check=True)
    elif how == "rs-16k":
        low = work / "low.wav"
        subprocess.run(["sox", str(src), str(low), "rate", "-v", "16000"], check=True)
        subprocess.run(["sox", str(low), str(out), "rate", "-v", str(sr)], check=True)
    y, sr_out = sf.read(str(out), dtype="float64", always_2d=True)
    assert sr_out == sr
    return y


def _smooth_db(freqs: np.ndarray, power: np.ndarray) -> np.ndarray:
    db = 10 * np.log10(np.maximum(power, 1e-30))
    return ndimage.median_filter(db, size=max(3, int(round(250.0 / freqs[1])) | 1), mode="nearest")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case, path, how in CASES:
            x, sr = sf.read(str(path), dtype="float64", always_2d=True)
            x *= 0.5 / np.abs(x).max()  # headroom: coders overshoot
            if how == "mono48":
                audio, rate = resample(x.mean(axis=1)[None].astype(np.float32), sr, 48_000), 48_000
            else:
                audio, rate = x.T, sr
            if how not in ("mono48", "native"):
                coded = _code(how, x, sr, Path(tmp)).T
                f, p_orig = long_term_spectrum(audio, rate)
                _, p_coded = long_term_spectrum(coded, rate)
                orig_db, coded_db = _smooth_db(f, p_orig), _smooth_db(f, p_coded)
                edge = f[np.nonzero(orig_db >= orig_db.max() - 80.0)[0].max()]
                top = orig_db.max() - 80.0
                kept = np.nonzero((coded_db >= orig_db - 20.0) & (coded_db >= top) & (f <= edge))[0]
                arrays[f"{case}__cut"] = np.array(float(f[kept.max()]))
                audio = coded
            f, power = long_term_spectrum(audio, rate)
            power[0] = 0.0
            db = 10 * np.log10(np.maximum(power / power.max(), 1e-20))
            arrays[f"{case}__db"] = db.astype(np.float16)
            arrays[f"{case}__sr"] = np.array(rate)
            cut = arrays.get(f"{case}__cut")
            print(case, rate, "" if cut is None else f"coder cutoff {float(cut):.0f} Hz")
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
