"""State-dict layout: the module's keys and shapes are exactly the official checkpoint's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiosr.config import AudioSRConfig
from audiosr.models import AudioSRModel

# Parameter counts of the full default model (spec section 5, 7 and 9.3).
FULL_ENCODER_PARAMS = 90_010_272
FULL_DECODER_PARAMS = 133_523_969
FULL_UNET_PARAMS = 258_195_088
FULL_VOCODER_PARAMS = 190_281_889


def read_manifest(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) from ``state_dict_manifest_full.tsv`` (``scalar`` = 0-dim)."""
    rows = path.read_text(encoding="utf-8").splitlines()
    header = rows[0].split("\t")
    assert header[:3] == ["key", "shape", "dtype"], header
    out = {}
    for row in rows[1:]:
        key, shape, dtype = row.split("\t")[:3]
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        out[key] = (dims, dtype)
    return out


def meta_model(first_stage_encoder: bool) -> AudioSRModel:
    with torch.device("meta"):
        return AudioSRModel(AudioSRConfig(), first_stage_encoder=first_stage_encoder)


@pytest.fixture(scope="module")
def manifest(golden) -> dict[str, tuple[tuple[int, ...], str]]:
    return read_manifest(golden.manifest_path)


@pytest.mark.parametrize("first_stage_encoder", [False, True])
def test_full_model_matches_manifest(manifest, first_stage_encoder: bool) -> None:
    model = meta_model(first_stage_encoder)
    prefixes = AudioSRModel.needed_prefixes(first_stage_encoder)
    expected = {k: v for k, v in manifest.items() if k.startswith(prefixes)}
    got = {
        k: (tuple(t.shape), str(t.dtype).removeprefix("torch."))
        for k, t in model.state_dict().items()
    }
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert wrong == {}
    # Every needed prefix contributes keys, and the encoder ones only when asked for.
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in got), prefix
    has_encoder = any(k.startswith("first_stage_model.encoder.") for k in got)
    assert has_encoder == first_stage_encoder


def test_full_model_parameter_counts() -> None:
    model = meta_model(first_stage_encoder=True)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(model.unet) == FULL_UNET_PARAMS
    assert count(model.decoder_vae.encoder) == FULL_ENCODER_PARAMS
    assert count(model.decoder_vae.decoder) == FULL_DECODER_PARAMS
    assert count(model.cond_vae.encoder) == FULL_ENCODER_PARAMS
    assert count(model.vocoder) == FULL_VOCODER_PARAMS
    assert model.scale_factor.shape == ()
    assert "scale_factor" in dict(model.named_buffers())


def test_tiny_checkpoint_loads_strictly(golden_config, golden_state_dict) -> None:
    model = AudioSRModel(golden_config, first_stage_encoder=True)
    prefixes = AudioSRModel.needed_prefixes(first_stage_encoder=True)
    subset = {k: v for k, v in golden_state_dict.items() if k.startswith(prefixes)}
    model.load_state_dict(subset, strict=True)
    assert model.scale_factor.item() == golden_state_dict["scale_factor"].item()
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(model.unet.out[2].weight, golden_state_dict[key])
    # Everything left out is a part inference never runs.
    ignored = {k.split(".")[0] for k in golden_state_dict if not k.startswith(prefixes)}
    ignored_vae2 = {
        k.split(".")[3]
        for k in golden_state_dict
        if k.startswith("cond_stage_models.0.vae.") and not k.startswith(prefixes)
    }
    assert "model" not in ignored and "first_stage_model" not in ignored
    assert ignored_vae2 <= {"decoder", "post_quant_conv", "vocoder"}


def test_tiny_checkpoint_without_first_stage_encoder(golden_config, golden_state_dict) -> None:
    model = AudioSRModel(golden_config)
    subset = {
        k: v for k, v in golden_state_dict.items() if k.startswith(AudioSRModel.needed_prefixes())
    }
    model.load_state_dict(subset, strict=True)
    assert not model.has_first_stage_encoder
    with pytest.raises(RuntimeError, match="encoder=False"):
        model.decoder_vae.encode(torch.zeros(1, 1, 64, 256))
