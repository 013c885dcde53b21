"""The mel VAE (upstream ``latent_encoder/autoencoder.py::AutoencoderKL``), spec section 5.

A convolutional KL autoencoder over log-mel "images" in upstream's layout ``[B, 1, T, F]``
(time = height, mel bins = width), kept so the official weights load unchanged. Each of the
``len(ch_mult) - 1`` down/up-sampling stages halves/doubles both axes, so a 512 x 256 mel maps
to a 16-channel 64 x 32 latent. AudioSR holds two independent copies: VAE#1
(``first_stage_model``: decoder + vocoder) and VAE#2 (``cond_stage_models.0.vae``: encoder
only, it encodes the low-passed mel into the concat condition).

Submodule and parameter names follow upstream (``encoder.down.{i}.block.{j}.conv1`` ...).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiosr.config import VAEConfig, VocoderConfig
from audiosr.models.attention import attention
from audiosr.models.hifigan import HiFiGAN

log = logging.getLogger(__name__)

# Posterior log-variance clamp of upstream DiagonalGaussianDistribution.
LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


def swish(x: Tensor) -> Tensor:
    """``x * sigmoid(x)`` written out as upstream's ``nonlinearity`` does.

    Numerically the same function as ``F.silu``, but the fused kernel rounds differently; the
    explicit form reproduces the original VAE outputs bit for bit.
    """
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    """32-group GroupNorm with eps 1e-6 (upstream ``Normalize``)."""
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation residual block without time embedding (``temb_proj`` does not exist)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # A 1x1 projection only where the width changes (upstream ``nin_shortcut``).
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, C_out, H, W]."""
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, 1x1-conv projections."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, attention_backend: str = "math") -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]; one head of width C, so the scale is 1/sqrt(C)."""
        b, c, h, w = x.shape
        hn = self.norm(x)
        # [B, C, H, W] -> [B, H*W, C] (position index h*W + w); views, no copy.
        q = self.q(hn).flatten(2).transpose(1, 2)
        k = self.k(hn).flatten(2).transpose(1, 2)
        v = self.v(hn).flatten(2).transpose(1, 2)
        o = attention(q, k, v, heads=1, backend=attention_backend)
        o = o.transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(o)


class Downsample(nn.Module):
    """Asymmetric zero pad (one row at the time end, one column at the top bin), conv stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H/2, W/2]."""
        # F.pad order is (W_left, W_right, H_top, H_bottom).
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 in both axes, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, 2H, 2W]."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """ResnetBlock, AttnBlock, ResnetBlock at the lowest resolution (keys ``mid.*``)."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: Tensor, attention_backend: str = "math") -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x), attention_backend))


class DownLevel(nn.Module):
    """One encoder resolution level: ResnetBlocks, then a Downsample except on the last."""

    def __init__(self, blocks: list[ResnetBlock], downsample: Downsample | None) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.downsample = downsample  # None registers no key, as upstream

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class UpLevel(nn.Module):
    """One decoder resolution level: ResnetBlocks, then an Upsample except on level 0."""

    def __init__(self, blocks: list[ResnetBlock], upsample: Upsample | None) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x)
        return x if self.upsample is None else self.upsample(x)


class Encoder(nn.Module):
    """Log-mel [B, 1, T, F] -> moments [B, 2*z_channels, T/8, F/8] (before ``quant_conv``)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)
        levels = []
        block_in = ch
        for i, m in enumerate(mult):
            block_out = ch * m
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, config.dropout))
                block_in = block_out
            last = i == len(mult) - 1
            levels.append(DownLevel(blocks, None if last else Downsample(block_in)))
        self.down = nn.ModuleList(levels)
        self.mid = MidBlock(block_in, config.dropout)
        self.norm_out = group_norm(block_in)
        out_channels = 2 * config.z_channels if config.double_z else config.z_channels
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, x: Tensor, attention_backend: str = "math") -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h, attention_backend)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent [B, z_channels, T/8, F/8] -> natural-log mel [B, 1, T, F] (no tanh)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, block_in, 3, padding=1)
        self.mid = MidBlock(block_in, config.dropout)
        # Built from the deepest level up but stored by level index, as upstream does
        # (``up[0]`` is the full-resolution level, applied last).
        levels: list[UpLevel] = []
        for i in reversed(range(len(mult))):
            block_out = ch * mult[i]
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, config.dropout))
                block_in = block_out
            levels.insert(0, UpLevel(blocks, Upsample(block_in) if i > 0 else None))
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, config.out_ch, 3, padding=1)

    def forward(self, z: Tensor, attention_backend: str = "math") -> Tensor:
        h = self.mid(self.conv_in(z), attention_backend)
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    """The mel VAE, optionally with its HiFi-GAN vocoder (upstream keeps it inside the VAE).

    Args:
        config: VAE hyper-parameters.
        encoder: build ``encoder`` + ``quant_conv``.
        decoder: build ``post_quant_conv`` + ``decoder``.
        vocoder: when given, build ``vocoder`` (:class:`HiFiGAN`) from this config.
    """

    def __init__(
        self,
        config: VAEConfig,
        *,
        encoder: bool = True,
        decoder: bool = True,
        vocoder: VocoderConfig | None = None,
    ) -> None:
        super().__init__()
        if config.attn_resolutions:
            raise ValueError(
                "per-level VAE attention is not used by AudioSR; set attn_resolutions=()"
            )
        self.config = config
        z2 = 2 * config.z_channels if config.double_z else config.z_channels
        if encoder:
            self.encoder = Encoder(config)
            self.quant_conv = nn.Conv2d(z2, 2 * config.embed_dim, 1)
        if decoder:
            self.decoder = Decoder(config)
            self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        if vocoder is not None:
            self.vocoder = HiFiGAN(vocoder)

    @property
    def has_encoder(self) -> bool:
        return hasattr(self, "encoder")

    @property
    def has_decoder(self) -> bool:
        return hasattr(self, "decoder")

    def encode(self, mel: Tensor, attention: str = "math") -> tuple[Tensor, Tensor]:
        """Posterior of a log-mel.

        Sampling is left to the caller (``z = mean + exp(0.5 * logvar) * noise``) so it can
        draw the noise from its own generator.

        Args:
            mel: natural-log mel [B, 1, T, F], T and F divisible by ``config.downsample_factor``.
            attention: attention backend of the mid block (``"math"`` or ``"sdpa"``).

        Returns:
            ``(mean, logvar)``, each [B, embed_dim, T/8, F/8]; logvar clamped to [-30, 20].
        """
        if not self.has_encoder:
            raise RuntimeError("this AutoencoderKL was built with encoder=False")
        self._check_divisible(mel, "mel")
        moments = self.quant_conv(self.encoder(mel, attention))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: Tensor, attention: str = "math") -> Tensor:
        """Latent to log-mel. The ``1 / scale_factor`` multiplication is the caller's job.

        Args:
            z: unscaled latent [B, embed_dim, T/8, F/8].
            attention: attention backend of the mid block.

        Returns:
            Natural-log mel [B, 1, T, F].
        """
        if not self.has_decoder:
            raise RuntimeError("this AutoencoderKL was built with decoder=False")
        return self.decoder(self.post_quant_conv(z), attention)

    def _check_divisible(self, x: Tensor, name: str) -> None:
        f = self.config.downsample_factor
        if x.dim() != 4 or x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"{name} must be [B, C, T, F] with T and F divisible by {f}, got {tuple(x.shape)}"
            )


def sample_posterior(mean: Tensor, logvar: Tensor, noise: Tensor) -> Tensor:
    """Reparameterised posterior draw ``mean + exp(0.5 * logvar) * noise`` [B, C, H, W]."""
    return mean + torch.exp(0.5 * logvar) * noise
