"""Shared fixtures: the golden data set, tiny configs and generated signals.

The golden directory comes from ``AUDIOSR_GOLDEN_DIR`` (default ``../shared/golden`` next to
the repository). Golden tests never skip: a missing directory is an error.
"""

from __future__ import annotations

import os

# The golden tensors are compared bit for bit (front end: 1e-6). MKL picks its FFT kernels by
# CPU: on AVX-512/AMX machines they round differently (STFT magnitudes up to 2.3e-5 off the
# golden data, which then moves the log-mel, the condition and every later stage). MKL's
# conditional numerical reproducibility mode pins the code path; it must be set before torch
# loads MKL, i.e. here, before any test module imports torch. Subprocesses inherit it.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

import json  # noqa: E402
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def golden_dir() -> Path:
    env = os.environ.get("AUDIOSR_GOLDEN_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "golden"
    return path.resolve()


class Golden:
    """Lazy view of one golden set: ``cases`` (npz), ``meta`` (json), paths to its files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        prefix = self._prefix(root)
        self.cases_path = root / f"{prefix}_cases.npz"
        self.meta_path = root / f"{prefix}_meta.json"
        self.config_path = root / f"{prefix}_config.json"
        self.checkpoint_path = root / f"{prefix}_checkpoint.pt"
        self.input_path = root / f"{prefix}_input.wav"
        self.manifest_path = root / "state_dict_manifest_full.tsv"
        self.meta: dict[str, Any] = json.loads(self.meta_path.read_text())
        self._npz = np.load(self.cases_path)
        self._cache: dict[str, np.ndarray] = {}

    @staticmethod
    def _prefix(root: Path) -> str:
        found = sorted(root.glob("*_cases.npz"))
        if len(found) != 1:
            raise FileNotFoundError(f"expected exactly one *_cases.npz in {root}, found {found}")
        return found[0].name[: -len("_cases.npz")]

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._npz[key]
        return self._cache[key]

    def __contains__(self, key: str) -> bool:
        return key in self._npz.files

    def keys(self) -> list[str]:
        return list(self._npz.files)

    def scalar(self, key: str) -> Any:
        return self[key].item()

    def t(self, key: str) -> torch.Tensor:
        return torch.from_numpy(np.array(self[key]))

    def runs(self) -> list[str]:
        """Names of the recorded full runs (``runA``, ``runB``, ...)."""
        return sorted(
            k for k in self.meta if k.startswith("run") and isinstance(self.meta[k], dict)
        )

    def ddim_step_counts(self) -> list[int]:
        out = []
        for key in self.keys():
            if key.startswith("ddim") and key.endswith("_timesteps"):
                out.append(int(key[len("ddim") : -len("_timesteps")]))
        return sorted(out)


@pytest.fixture(scope="session")
def golden() -> Golden:
    root = golden_dir()
    if not root.is_dir():
        raise FileNotFoundError(
            f"golden data not found at {root}; set AUDIOSR_GOLDEN_DIR to the golden directory"
        )
    return Golden(root)


@pytest.fixture(scope="session")
def golden_config(golden: Golden):
    from audiosr.config import AudioSRConfig

    return AudioSRConfig.from_file(golden.config_path)


@pytest.fixture(scope="session")
def golden_state_dict(golden: Golden) -> dict[str, torch.Tensor]:
    obj = torch.load(golden.checkpoint_path, map_location="cpu", weights_only=True)
    return obj["state_dict"]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
