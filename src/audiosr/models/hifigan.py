"""48 kHz HiFi-GAN generator (upstream ``audiosr/hifigan/models.py::Generator``), spec 9.3.

Kong et al., "HiFi-GAN: Generative Adversarial Networks for Efficient and High Fidelity Speech
Synthesis" (NeurIPS 2020), V1 generator with resblock type "1". Weight norm is already folded
into plain ``weight``/``bias`` in the official checkpoint, so the layers here are plain convs.

The input is the VAE's natural-log mel [B, 256, T] (no de-normalisation); five transposed
convolutions upsample by 6*5*4*2*2 = 480 samples per frame. Their padding ``(k - u) // 2``
leaves 16 extra samples, so the output has ``480 * T + 16`` samples at 48 kHz.
"""

from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiosr.config import VocoderConfig

log = logging.getLogger(__name__)

# Slope of every leaky ReLU inside the network (upstream LRELU_SLOPE).
LRELU_SLOPE = 0.1
# The one before conv_post uses PyTorch's default slope: upstream calls F.leaky_relu(x)
# without a slope there (spec 9.3).
FINAL_LRELU_SLOPE = 0.01


class FP32Conv1d(nn.Conv1d):
    """A ``Conv1d`` that computes in fp32 even inside a bf16/fp16 autocast region.

    Used for the vocoder's first and last convolution: rounding the natural-log mel input and
    the waveform output to bf16 dominated the vocoder's half-precision error (measured with
    ``benchmarks/bench_speed.py --stage-errors``: 49 -> 54 dB SNR on random full-size weights,
    46 -> 88 dB on the tiny golden model), and the two cost 0.1 % of its FLOPs. Same
    parameters and state-dict keys as ``nn.Conv1d``; a no-op outside autocast.
    """

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.float()
        # Meta tensors (shape and FLOP counting) carry no autocast state.
        off = (
            contextlib.nullcontext()
            if x.device.type == "meta"
            else torch.autocast(x.device.type, enabled=False)
        )
        with off:
            return self._conv_forward(x.float(), self.weight.float(), bias)


def _same_padding(kernel_size: int, dilation: int) -> int:
    """Padding that keeps the length of a stride-1 dilated conv."""
    return dilation * (kernel_size - 1) // 2


class ResBlock(nn.Module):
    """Three (dilated conv, conv) residual stages with leaky ReLU pre-activation."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(
                channels,
                channels,
                kernel_size,
                dilation=d,
                padding=_same_padding(kernel_size, d),
            )
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1))
            for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, L] -> [B, C, L]."""
        for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
            xt = conv1(F.leaky_relu(x, LRELU_SLOPE))
            xt = conv2(F.leaky_relu(xt, LRELU_SLOPE))
            x = xt + x
        return x


class HiFiGAN(nn.Module):
    """Mel to waveform generator.

    Args:
        config: vocoder hyper-parameters (``upsample_initial_channel`` is halved after every
            upsampling stage).
    """

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        if len(config.upsample_rates) != len(config.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if len(config.resblock_kernel_sizes) != len(config.resblock_dilation_sizes):
            raise ValueError(
                "resblock_kernel_sizes and resblock_dilation_sizes must have the same length"
            )
        self.config = config
        self.num_kernels = len(config.resblock_kernel_sizes)
        ch = config.upsample_initial_channel
        self.conv_pre = FP32Conv1d(config.num_mels, ch, 7, padding=3)
        ups = []
        resblocks = []
        for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
            # Padding (k - u) // 2 makes each stage produce (L - 1) * u + k - 2p samples.
            pad = (kernel - rate) // 2
            ups.append(nn.ConvTranspose1d(ch, ch // 2, kernel, stride=rate, padding=pad))
            ch //= 2
            # One ResBlock per kernel size; forward() averages them.
            for k, dilations in zip(
                config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True
            ):
                resblocks.append(ResBlock(ch, k, tuple(dilations)))
        self.ups = nn.ModuleList(ups)
        self.resblocks = nn.ModuleList(resblocks)
        self.conv_post = FP32Conv1d(ch, 1, 7, padding=3)

    def output_length(self, frames: int) -> int:
        """Samples produced for ``frames`` mel frames (480 * T + 16 for the 48 kHz config)."""
        n = frames
        for rate, kernel in zip(
            self.config.upsample_rates, self.config.upsample_kernel_sizes, strict=True
        ):
            n = (n - 1) * rate - 2 * ((kernel - rate) // 2) + kernel
        return n

    @property
    def context_frames(self) -> int:
        """Mel frames beyond sample ``s`` that can still change output sample ``s``.

        The receptive field to the right, added up layer by layer in frames: ``conv_pre``
        (kernel 7: 3 frames), per stage the transposed convolution (at most
        ``ceil(k / u)`` input samples) and the widest ResBlock (per dilation d, a dilated and
        a plain convolution: ``(d + 1) * (k - 1) / 2`` samples at the stage's rate), and
        ``conv_post``. Vocoding only the frames an output prefix needs plus this many gives
        that prefix exactly as the whole mel would (up to float rounding).
        """
        cfg = self.config
        frames = 3.0  # conv_pre
        rate = 1
        for u, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
            frames += -(-k // u) / rate  # transposed conv, in input samples of this stage
            rate *= u
            widest = max(
                sum((d + 1) * (kr - 1) // 2 for d in dil)
                for kr, dil in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
            )
            frames += widest / rate
        frames += 3 / rate  # conv_post
        return int(frames) + 1

    def forward(self, mel: Tensor) -> Tensor:
        """Vocode a natural-log mel.

        Args:
            mel: [B, n_mels, T] natural-log mel (upstream layout ``mel[:, 0].transpose(1, 2)``).

        Returns:
            Waveform [B, 1, 480 * T + 16] in [-1, 1] at 48 kHz.
        """
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            # Multi-receptive-field fusion: mean of this stage's ResBlocks (sum, then divide,
            # in upstream's order).
            first = i * self.num_kernels
            xs = self.resblocks[first](x)
            for j in range(first + 1, first + self.num_kernels):
                xs = xs + self.resblocks[j](x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x, FINAL_LRELU_SLOPE)
        return torch.tanh(self.conv_post(x))
