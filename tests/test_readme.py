"""The README's first command (install, then upscale a bundled example offline) really works."""

from __future__ import annotations

import shlex
from pathlib import Path

import soundfile as sf

from audiosr.cli import main

REPO = Path(__file__).resolve().parents[1]


def _quick_start_command() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.startswith("python3 -m venv"))
    step = line.split("&&")[-1].strip()
    argv = shlex.split(step)
    assert argv[0] == "audiosr", step
    return argv[1:]


def test_readme_first_command_runs_offline(tmp_path, monkeypatch):
    argv = _quick_start_command()
    assert "--engine" in argv and argv[argv.index("--engine") + 1] == "dsp"
    monkeypatch.chdir(REPO)
    argv[argv.index("-s") + 1] = str(tmp_path / "output")
    assert main([*argv, "-q"]) == 0
    src = REPO / argv[argv.index("-i") + 1]
    outs = sorted((tmp_path / "output").iterdir())
    assert [p.suffix for p in outs] == [".png", ".wav"]
    info = sf.info(str(outs[1]))
    assert info.samplerate == 48000
    assert abs(info.duration - sf.info(str(src)).duration) < 1e-3
