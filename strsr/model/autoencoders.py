"""Autoencoders behind a preset: diffusers' KL autoencoders, and a lossless pixel-(un)shuffle one for tiny models.

Everything downstream talks to an autoencoder through `encode_latent` and `decode_image`, so the latent conventions
in `strsr.model.latents` do not care which kind is underneath.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, AutoencoderKLFlux2
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from strsr.spec import LATENT_MODES


class PixelShuffleAutoencoder(ModelMixin, ConfigMixin):
    """A parameter-free, exactly invertible "VAE": pixel-unshuffle by `scale` (3 -> 3*scale^2 channels).

    Images in [-1, 1], (B, 3, H, W) -> latents (B, 3*scale^2, H/scale, W/scale). Lossless, so a tiny DiT trained on
    it learns super-resolution itself instead of fighting a random-weight VAE.
    """

    @register_to_config
    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale
        # A buffer gives the module a device and dtype like any diffusers autoencoder.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def latent_channels(self) -> int:
        return 3 * self.scale**2

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(image, self.scale)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latent, self.scale)


Autoencoder = AutoencoderKLFlux2 | AutoencoderKL | PixelShuffleAutoencoder




def has_posterior(vae: Autoencoder) -> bool:
    return not isinstance(vae, PixelShuffleAutoencoder)


def encode_latent(
    vae: Autoencoder,
    image: torch.Tensor,
    latent: str = "mode",
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> latent (B, C, H/s, W/s).

    latent "mode": the posterior's mode. "sample": mean + std * noise, with the noise drawn by diffusers'
    `DiagonalGaussianDistribution.sample` from `generator` (the global RNG when None: what the official scripts
    use), or given as `noise` (B, C, H/s, W/s) by an exported graph's caller.
    """
    if latent not in LATENT_MODES:  # a draw from the posterior (the official encoding), or its mode
        raise ValueError(f"unknown latent mode {latent!r}; choose from {', '.join(LATENT_MODES)}")
    if not has_posterior(vae):
        return vae.encode(image)
    posterior = vae.encode(image).latent_dist
    if latent == "mode":
        return posterior.mode()
    if noise is None:
        return posterior.sample(generator)
    return posterior.mean + posterior.std * noise.to(posterior.mean.dtype)


def decode_image(vae: Autoencoder, latent: torch.Tensor) -> torch.Tensor:
    """Latent (B, C, h, w) -> image (B, 3, h*s, w*s), nominally in [-1, 1] (not clamped)."""
    if isinstance(vae, PixelShuffleAutoencoder):
        return vae.decode(latent)
    return vae.decode(latent).sample


AUTOENCODER_CLASSES = {
    "flux2-kl": AutoencoderKLFlux2,
    "kl": AutoencoderKL,
    "pixel-shuffle": PixelShuffleAutoencoder,
}
