"""Latent conventions: pixels <-> the "state" tensor on which the one-step Euler update acts.

The state is spatial, (B, C_state, h, w), for both families, so tiling and the Euler step never need to know how
a backbone tokenises it:
- flux2:  state = BN-normalised 2x2-patchified VAE latent, (B, 4C, H/2s, W/2s); tokens are its row-major packing.
- zimage: state = raw VAE latent, (B, C, H/s, W/s); the transformer patchifies internally.
"""

from __future__ import annotations

import torch
from torch import nn

from strsr.model.autoencoders import Autoencoder, decode_image, encode_latent, has_posterior
from strsr.presets import Family, LatentSpec


def patchify_2x2(latent: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2); channel order (c, dy, dx), as FLUX.2's pipelines do."""
    b, c, h, w = latent.shape
    x = latent.reshape(b, c, h // 2, 2, w // 2, 2)  # (B, C, H/2, dy, W/2, dx)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def unpatchify_2x2(state: torch.Tensor) -> torch.Tensor:
    """Inverse of `patchify_2x2`: (B, 4C, h, w) -> (B, C, 2h, 2w)."""
    b, c4, h, w = state.shape
    x = state.reshape(b, c4 // 4, 2, 2, h, w)  # (B, C, dy, dx, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, h * 2, w * 2)


def pack_tokens(state: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C), row-major."""
    return state.flatten(2).transpose(1, 2)


def unpack_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, h*w, C) -> (B, C, h, w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def flux2_image_ids(height: int, width: int, device=None) -> torch.Tensor:
    """(h*w, 4) FLUX.2 RoPE coordinates (t, y, x, l) = (0, y, x, 0), row-major like `pack_tokens`."""
    y, x = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    zeros = torch.zeros_like(y)
    return torch.stack([zeros, y, x, zeros], dim=-1).reshape(-1, 4)


def flux2_text_ids(length: int, device=None) -> torch.Tensor:
    """(L, 4) FLUX.2 RoPE coordinates of conditioning tokens: (0, 0, 0, l)."""
    ids = torch.zeros(length, 4, dtype=torch.long, device=device)
    ids[:, 3] = torch.arange(length, device=device)
    return ids


class LatentCodec(nn.Module):
    """Encodes images to the state and decodes it back, with the family's normalisation.

    Images are (B, 3, H, W) in [-1, 1] with H, W multiples of `spec.pixel_multiple`. `latent` is "sample" (a draw
    from the VAE posterior, the official convention) or "mode"; it only matters for a VAE with a posterior.
    """

    def __init__(self, family: Family, spec: LatentSpec, vae: Autoencoder, latent: str = "sample"):
        super().__init__()
        self.family = family
        self.spec = spec
        self.vae = vae
        self.latent = latent
        bn = getattr(vae, "bn", None)
        if family == "flux2" and bn is not None:
            eps = vae.config.batch_norm_eps
            mean, std = bn.running_mean, torch.sqrt(bn.running_var + eps)
        else:
            channels = spec.channels * 4
            mean, std = torch.zeros(channels), torch.ones(channels)
        # Kept as fp32 buffers: BatchNorm statistics lose precision in bf16.
        self.register_buffer("bn_mean", mean.detach().float().reshape(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer("bn_std", std.detach().float().reshape(1, -1, 1, 1).clone(), persistent=False)

    @property
    def samples(self) -> bool:
        """True when encoding draws noise: the latent mode is "sample" and the VAE has a posterior."""
        return self.latent == "sample" and has_posterior(self.vae)

    def latent_shape(self, image_shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int, int]:
        """(B, C, H/s, W/s): the VAE latent (and sampling noise) for images of `image_shape` (B, 3, H, W)."""
        batch, _, height, width = image_shape
        scale = self.spec.vae_scale
        return batch, self.spec.channels, height // scale, width // scale

    def encode(
        self, image: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Image -> state; with `latent="sample"` the noise comes from `generator` (or is given as `noise`)."""
        multiple = self.spec.pixel_multiple
        if image.shape[-2] % multiple or image.shape[-1] % multiple:
            raise ValueError(f"image sides {tuple(image.shape[-2:])} must be multiples of {multiple}")
        latent = encode_latent(self.vae, image.to(self.vae.dtype), self.latent, generator, noise)
        if self.family == "zimage":
            return latent.float()  # raw: the official Z-Image convention applies no shift/scale on encode
        state = patchify_2x2(latent.float())
        return (state - self.bn_mean) / self.bn_std

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        if self.family == "zimage":
            latent = state / self.spec.scaling_factor + self.spec.shift_factor
        else:
            latent = unpatchify_2x2(state.float() * self.bn_std + self.bn_mean)
        return decode_image(self.vae, latent.to(self.vae.dtype))
