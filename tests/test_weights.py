"""Weights: strict loading, clear failures, no pickled code executed, safetensors conversion."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest
import torch

from audiosr.config import AudioSRConfig
from audiosr.errors import CheckpointError
from audiosr.weights import convert_checkpoint, load_model, resolve_checkpoint


def test_loads_official_layout_and_ignores_unused(golden, golden_config, golden_state_dict):
    model = load_model(golden_config, golden.checkpoint_path)
    sd = model.state_dict()
    # Every tensor we keep equals the checkpoint's; unused prefixes were never loaded.
    for key, value in sd.items():
        torch.testing.assert_close(value, golden_state_dict[key], rtol=0, atol=0)
    assert not any(k.startswith(("clap.", "model_ema.", "logvar")) for k in sd)
    assert not any(k.startswith("cond_stage_models.0.vae.decoder") for k in sd)
    assert float(model.scale_factor) == float(golden_state_dict["scale_factor"])


def test_missing_key_is_named(tmp_path, golden_config, golden_state_dict):
    sd = dict(golden_state_dict)
    dropped = "model.diffusion_model.out.2.weight"
    del sd[dropped]
    path = tmp_path / "broken.pt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match="model.diffusion_model.out.2.weight"):
        load_model(golden_config, path)


def test_shape_mismatch_is_reported(golden):
    # The tiny checkpoint does not fit the full config: a clear error, no 6 GB allocation.
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(AudioSRConfig(), golden.checkpoint_path)


def test_truncated_and_garbage_files(tmp_path, golden, golden_config):
    data = golden.checkpoint_path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes.bin"
    text.write_text("this is not a checkpoint\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, text, empty):
        with pytest.raises(CheckpointError) as info:
            load_model(golden_config, path)
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(golden_config, tmp_path / "absent.pt")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/audiosr_pwned_marker",))


def test_pickled_code_is_never_executed(tmp_path, golden_config):
    marker = Path("/tmp/audiosr_pwned_marker")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.bin"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": _Payload()}}, f)
    with pytest.raises(CheckpointError):
        load_model(golden_config, path)
    evil_zip = tmp_path / "evil_zip.pt"
    torch.save({"state_dict": {"x": _Payload()}}, evil_zip)
    with pytest.raises(CheckpointError):
        load_model(golden_config, evil_zip)
    assert not marker.exists()


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_convert_to_safetensors_round_trip(tmp_path, golden, golden_config, dtype):
    dst = convert_checkpoint(
        golden.checkpoint_path, tmp_path / "tiny.safetensors", config=golden_config, dtype=dtype
    )
    ref = load_model(golden_config, golden.checkpoint_path).state_dict()
    got = load_model(golden_config, dst).state_dict()  # loaded back as fp32
    assert set(got) == set(ref)
    tol = 0 if dtype == "fp32" else 2e-3
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=tol, atol=tol)
    assert dst.stat().st_size < golden.checkpoint_path.stat().st_size


def test_unknown_name_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="unknown model name"):
        resolve_checkpoint("large")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("AUDIOSR_CHECKPOINT_BASIC", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="--engine dsp"):
        resolve_checkpoint("basic")
    assert time.perf_counter() - t0 < 5.0


def test_env_override(monkeypatch, golden):
    monkeypatch.setenv("AUDIOSR_CHECKPOINT_SPEECH", str(golden.checkpoint_path))
    assert resolve_checkpoint("speech") == golden.checkpoint_path
