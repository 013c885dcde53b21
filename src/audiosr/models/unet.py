"""The latent denoiser: openaimodel ``UNetModel`` with spatial transformers (spec section 7).

Ho et al. (2020) / Dhariwal & Nichol (2021) UNet as used by latent diffusion (Rombach et al.,
CVPR 2022), in AudioSR's configuration: ResBlocks conditioned on a sinusoidal timestep
embedding, and at every attention level two ``SpatialTransformer``s that are both pure
self-attention (no context is ever given; upstream's ``extra_sa_layer`` adds the first one and
a ``context_dim=None`` slot the second). The low-resolution condition enters only by channel
concatenation with the noisy latent, so ``in_channels = 16 + 16``. The output is the
v-prediction (Salimans & Ho, 2022) [B, 16, H, W].

Module and parameter names follow upstream (``input_blocks.{i}.{j}``, ``middle_block``,
``output_blocks``, ``in_layers``/``emb_layers``/``out_layers``, ``transformer_blocks.0.attn1``,
...) so ``model.diffusion_model.*`` of the official checkpoint loads unchanged.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiosr.config import UNetConfig
from audiosr.models.attention import attention
from audiosr.models.vae import Upsample  # same layer (nearest x2 + 3x3 conv, key `conv`)

log = logging.getLogger(__name__)

# Period of the slowest timestep sinusoid (upstream ``max_period``).
MAX_PERIOD = 10_000


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer DDPM steps, cosine half first (upstream layout).

    ``freq_i = exp(-ln(10000) * i / (dim/2))`` for ``i = 0 .. dim/2 - 1`` and the embedding is
    ``[cos(t * freq), sin(t * freq)]``, computed in fp32.

    Args:
        t: timesteps [B] (integer steps 0..999, any numeric dtype).
        dim: embedding width (even).

    Returns:
        Embedding [B, dim], float32.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """32-group GroupNorm evaluated in fp32 and cast back (upstream ``normalization``).

    Keeps the statistics exact when the UNet runs in bf16/fp16; a no-op cast in fp32.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        y = F.group_norm(
            x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps
        )
        return y.to(x.dtype)


class ResBlock(nn.Module):
    """Residual block with an additive timestep embedding (``use_scale_shift_norm=False``)."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x [B, C_in, H, W], emb [B, E] -> [B, C_out, H, W]."""
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]  # broadcast over H, W
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    """3x3 conv with stride 2 and padding 1 (key ``op``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H/2, W/2]."""
        return self.op(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention on tokens (upstream ``CrossAttention`` with no context)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, attention_backend: str = "math") -> Tensor:
        """[B, N, C] -> [B, N, C]."""
        out = attention(
            self.to_q(x), self.to_k(x), self.to_v(x), self.heads, backend=attention_backend
        )
        return self.to_out(out)


class GEGLU(nn.Module):
    """Gated GELU (Shazeer, 2020): ``a * gelu(g)`` with ``[a | g] = proj(x)``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: Tensor) -> Tensor:
        a, g = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(g)  # exact (erf) GELU


class FeedForward(nn.Module):
    """GEGLU MLP with 4x expansion (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-LN transformer block; ``attn2`` is a second self-attention (no context in AudioSR)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        # Declaration order mirrors upstream's key order: attn1, ff, attn2, norm1..3.
        self.attn1 = SelfAttention(dim, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = SelfAttention(dim, heads, dim_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, attention_backend: str = "math") -> Tensor:
        """[B, N, C] -> [B, N, C]."""
        x = x + self.attn1(self.norm1(x), attention_backend)
        x = x + self.attn2(self.norm2(x), attention_backend)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """GroupNorm, 1x1 conv, transformer over the H*W tokens (time-major), 1x1 conv, residual."""

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, dropout) for _ in range(depth)
        )
        self.proj_out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: Tensor, attention_backend: str = "math") -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        b, _, h, w = x.shape
        s = self.proj_in(self.norm(x))
        s = s.flatten(2).transpose(1, 2)  # [B, H*W, C], token index h*W + w
        for block in self.transformer_blocks:
            s = block(s, attention_backend)
        s = s.transpose(1, 2).reshape(b, -1, h, w)
        return self.proj_out(s) + x


class TimestepEmbedSequential(nn.ModuleList):
    """A UNet block: its layers in order, each given what it needs (emb or backend)."""

    def forward(self, x: Tensor, emb: Tensor, attention_backend: str = "math") -> Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, attention_backend)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """v-prediction UNet over the latent [B, 32, T/8, 32] (noisy latent ++ condition).

    Args:
        config: UNet hyper-parameters (upstream ``unet_config.params`` names).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        emb_dim = config.time_embed_dim
        drop = config.dropout

        def transformers(ch: int) -> list[nn.Module]:
            # Heads of num_head_channels (32) each; one slot holds the extra self-attention
            # layer plus the (context-free) "cross" layer, both self-attention.
            heads = ch // config.num_head_channels
            n = 2 if config.extra_sa_layer else 1
            return [
                SpatialTransformer(
                    ch, heads, config.num_head_channels, config.transformer_depth, drop
                )
                for _ in range(n)
            ]

        self.time_embed = nn.Sequential(
            nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        # Encoder half: record each block's width for the skip connections.
        ch = mc
        ds = 1  # current downsampling factor
        skip_channels = [ch]
        blocks = [TimestepEmbedSequential([nn.Conv2d(config.in_channels, ch, 3, padding=1)])]
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, mult * mc, emb_dim, drop)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers += transformers(ch)
                blocks.append(TimestepEmbedSequential(layers))
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                blocks.append(TimestepEmbedSequential([Downsample(ch)]))
                skip_channels.append(ch)
                ds *= 2
        self.input_blocks = nn.ModuleList(blocks)

        # The middle block always attends, whatever attention_resolutions says.
        self.middle_block = TimestepEmbedSequential(
            [ResBlock(ch, ch, emb_dim, drop), *transformers(ch), ResBlock(ch, ch, emb_dim, drop)]
        )

        # Decoder half: num_res_blocks + 1 blocks per level, each eating one skip.
        blocks = []
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), mult * mc, emb_dim, drop)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers += transformers(ch)
                if level > 0 and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                blocks.append(TimestepEmbedSequential(layers))
        self.output_blocks = nn.ModuleList(blocks)
        assert not skip_channels, "every skip connection must be consumed"

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, config.out_channels, 3, padding=1)
        )

    def forward(self, x: Tensor, t: Tensor, attention: str = "math") -> Tensor:
        """Predict v for a batch of noisy latents concatenated with their condition.

        Args:
            x: ``cat([x_t, scale_factor * cond], dim=1)`` [B, in_channels, H, W]; H and W must
                be divisible by ``2 ** (len(channel_mult) - 1)`` (8).
            t: integer DDPM timesteps [B] (or a 0-dim tensor, broadcast to the batch).
            attention: attention backend, ``"math"`` (reference) or ``"sdpa"``.

        Returns:
            v-prediction [B, out_channels, H, W].
        """
        f = self.config.downsample_factor
        if x.dim() != 4 or x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"UNet input must be [B, C, H, W] with H and W divisible by {f}, "
                f"got {tuple(x.shape)}"
            )
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels).to(x.dtype))

        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, attention)
            skips.append(h)
        h = self.middle_block(h, emb, attention)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, attention)
        return self.out(h)
