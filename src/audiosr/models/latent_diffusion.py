"""Container of the networks AudioSR inference needs, keyed like the official checkpoint.

Upstream ``LatentDiffusion`` holds much more (CLAP, an EMA copy of the UNet, the schedule
buffers, ``logvar``, a second decoder and vocoder inside the condition VAE). Only the parts
inference runs are built here, under their upstream attribute paths, so that the checkpoint
subset selected by :meth:`AudioSRModel.needed_prefixes` loads with ``strict=True``:

* ``model.diffusion_model.*``: the UNet (v-prediction denoiser);
* ``first_stage_model.post_quant_conv.*`` + ``first_stage_model.decoder.*``: VAE#1 decoder,
  latent -> log-mel;
* ``first_stage_model.vocoder.*``: HiFi-GAN, log-mel -> 48 kHz waveform;
* ``first_stage_model.encoder.*`` + ``first_stage_model.quant_conv.*`` (optional): VAE#1
  encoder, whose posterior draw the original discards; built only to replay it;
* ``cond_stage_models.0.vae.encoder.*`` + ``cond_stage_models.0.vae.quant_conv.*``: VAE#2
  encoder, low-passed mel -> concat condition;
* ``scale_factor``: the latent scale ``sf`` (0-dim buffer).

The schedule is recomputed in ``audiosr.diffusion`` rather than loaded.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from audiosr.config import AudioSRConfig
from audiosr.models.hifigan import HiFiGAN
from audiosr.models.unet import UNetModel
from audiosr.models.vae import AutoencoderKL

log = logging.getLogger(__name__)


class DiffusionWrapper(nn.Module):
    """Holds the UNet as ``diffusion_model`` (upstream key path ``model.diffusion_model``)."""

    def __init__(self, unet: UNetModel) -> None:
        super().__init__()
        self.diffusion_model = unet


class VAEFeatureExtract(nn.Module):
    """Holds the condition VAE as ``vae`` (upstream ``cond_stage_models.0.vae``)."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae


class AudioSRModel(nn.Module):
    """UNet, two VAEs, vocoder and ``scale_factor`` with the official state-dict names.

    Construction allocates real tensors unless done under ``with torch.device("meta"):``,
    which builds the full (672 M parameter) model instantly for shape checks or for
    ``load_state_dict(..., assign=True)``.

    Args:
        config: model hyper-parameters.
        first_stage_encoder: also build VAE#1's encoder (only needed to reproduce the
            original's discarded posterior draw and for golden tests).
    """

    def __init__(self, config: AudioSRConfig, *, first_stage_encoder: bool = False) -> None:
        super().__init__()
        self.config = config
        self.model = DiffusionWrapper(UNetModel(config.unet))
        self.first_stage_model = AutoencoderKL(
            config.vae, encoder=first_stage_encoder, decoder=True, vocoder=config.vocoder
        )
        self.cond_stage_models = nn.ModuleList(
            [VAEFeatureExtract(AutoencoderKL(config.vae, encoder=True, decoder=False))]
        )
        # Persistent: the real value (e.g. 0.37 in the golden tiny model) comes from the
        # checkpoint; 1.0 is upstream's constructor value.
        self.register_buffer("scale_factor", torch.tensor(1.0, dtype=torch.float32))

    @staticmethod
    def needed_prefixes(first_stage_encoder: bool = False) -> tuple[str, ...]:
        """Checkpoint key prefixes this module consumes (every other key is ignored).

        Args:
            first_stage_encoder: include VAE#1's encoder and ``quant_conv``.

        Returns:
            Prefixes; ``"scale_factor"`` is a whole key.
        """
        prefixes = (
            "model.diffusion_model.",
            "first_stage_model.decoder.",
            "first_stage_model.post_quant_conv.",
            "first_stage_model.vocoder.",
            "cond_stage_models.0.vae.encoder.",
            "cond_stage_models.0.vae.quant_conv.",
            "scale_factor",
        )
        if first_stage_encoder:
            prefixes += ("first_stage_model.encoder.", "first_stage_model.quant_conv.")
        return prefixes

    @property
    def has_first_stage_encoder(self) -> bool:
        return self.first_stage_model.has_encoder

    @property
    def unet(self) -> UNetModel:
        """The denoiser (``model.diffusion_model``)."""
        return self.model.diffusion_model

    @property
    def decoder_vae(self) -> AutoencoderKL:
        """VAE#1 (``first_stage_model``): decoder, vocoder, optionally the encoder."""
        return self.first_stage_model

    @property
    def cond_vae(self) -> AutoencoderKL:
        """VAE#2 (``cond_stage_models.0.vae``), encoder only."""
        return self.cond_stage_models[0].vae

    @property
    def vocoder(self) -> HiFiGAN:
        """HiFi-GAN (``first_stage_model.vocoder``)."""
        return self.first_stage_model.vocoder
