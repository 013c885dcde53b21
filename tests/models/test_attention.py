"""Attention backends, input checks and shape arithmetic of the networks (random weights)."""

from __future__ import annotations

import pytest
import torch

from audiosr.config import AudioSRConfig
from audiosr.models import AutoencoderKL, HiFiGAN, UNetModel, attention


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int):
    """Per-head loop in float64: the definition, independent of the implementation."""
    b, n, c = q.shape
    d = c // heads
    out = torch.empty(b, n, c, dtype=torch.float64)
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = (t[..., sl].double() for t in (q, k, v))
        w = torch.softmax(qh @ kh.transpose(1, 2) / d**0.5, dim=-1)
        out[..., sl] = w @ vh
    return out


@pytest.mark.parametrize("backend", ["math", "sdpa"])
@pytest.mark.parametrize(("heads", "n", "m"), [(1, 7, 7), (3, 10, 5), (4, 16, 16)])
def test_attention_matches_definition(backend: str, heads: int, n: int, m: int) -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, n, 8 * heads, generator=g)
    k = torch.randn(2, m, 8 * heads, generator=g)
    v = torch.randn(2, m, 8 * heads, generator=g)
    out = attention(q, k, v, heads, backend=backend)
    assert out.shape == q.shape
    torch.testing.assert_close(out.double(), naive_attention(q, k, v, heads), rtol=1e-5, atol=1e-5)


def test_attention_rejects_bad_arguments() -> None:
    x = torch.zeros(1, 4, 6)
    with pytest.raises(ValueError, match="backend"):
        attention(x, x, x, 2, backend="flash")
    with pytest.raises(ValueError, match="divide"):
        attention(x, x, x, 4)


def test_unet_shape_and_checks() -> None:
    cfg = AudioSRConfig.tiny().unet
    unet = UNetModel(cfg).eval()
    x = torch.randn(2, cfg.in_channels, 16, 8)
    with torch.no_grad():
        out = unet(x, torch.tensor([3, 500]))
        same_t = unet(x, torch.tensor(3))  # 0-dim t is broadcast to the batch
        per_item = unet(x, torch.tensor([3, 3]))
    assert out.shape == (2, cfg.out_channels, 16, 8)
    torch.testing.assert_close(same_t, per_item)
    with pytest.raises(ValueError, match="divisible by 8"):
        unet(torch.randn(1, cfg.in_channels, 12, 8), torch.tensor([1]))


def test_vae_round_trip_shapes() -> None:
    cfg = AudioSRConfig.tiny()
    vae = AutoencoderKL(cfg.vae).eval()
    mel = torch.randn(1, 1, 64, 256)
    with torch.no_grad():
        mean, logvar = vae.encode(mel)
        assert mean.shape == logvar.shape == (1, cfg.vae.embed_dim, 8, 32)
        assert logvar.min() >= -30 and logvar.max() <= 20
        assert vae.decode(mean).shape == mel.shape
    with pytest.raises(ValueError, match="divisible by 8"):
        vae.encode(torch.randn(1, 1, 60, 256))
    assert not hasattr(AutoencoderKL(cfg.vae, decoder=False), "vocoder")


def test_vocoder_output_length() -> None:
    voc = HiFiGAN(AudioSRConfig.tiny().vocoder).eval()
    for frames in (1, 5, 32):
        with torch.no_grad():
            wave = voc(torch.randn(1, 256, frames))
        assert wave.shape == (1, 1, 480 * frames + 16) == (1, 1, voc.output_length(frames))
        assert wave.abs().max() <= 1.0


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_unet_in_bfloat16_tracks_fp32(backend: str) -> None:
    # bf16 weights and activations; GroupNorm32 must still run (in fp32) and the result
    # stay near the fp32 reference (bf16 has ~3 significant digits).
    torch.manual_seed(0)
    unet = UNetModel(AudioSRConfig.tiny().unet).eval()
    x = torch.randn(2, 32, 16, 8)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        ref = unet(x, t, attention=backend)
        out = unet.to(torch.bfloat16)(x.bfloat16(), t, attention=backend)
    assert out.dtype == torch.bfloat16
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05
