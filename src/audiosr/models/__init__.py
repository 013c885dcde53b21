"""Networks of AudioSR, with upstream state-dict names: UNet, mel VAE, HiFi-GAN."""

from audiosr.models.attention import attention
from audiosr.models.hifigan import HiFiGAN
from audiosr.models.latent_diffusion import AudioSRModel
from audiosr.models.unet import UNetModel, timestep_embedding
from audiosr.models.vae import AutoencoderKL, sample_posterior

__all__ = [
    "AudioSRModel",
    "AutoencoderKL",
    "HiFiGAN",
    "UNetModel",
    "attention",
    "sample_posterior",
    "timestep_embedding",
]
