"""The one-step pipeline cut into exportable stages, each a plain nn.Module over tensors.

    vae_encoder:  upsampled LR tile (B, 3, H, W) in [-1, 1] -> state (B, C, h, w)   (family normalisation included)
    dit_onestep:  state, condition tokens (B, L, D) -> z0 = state - t1 * G(state, t1, c)   (Euler step folded in)
    vae_decoder:  state -> image (B, 3, H, W), nominally in [-1, 1]

The state is the spatial tensor the Euler step acts on (`strsr.latents`); FLUX.2's packed tokens are its row-major
flattening, done inside the DiT graph. Attention is always the PyTorch reference path here, never a Triton op.
"""

from __future__ import annotations

import contextlib

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_flux2 import Flux2PosEmbed
from torch import nn

from strsr.backbones import Condition
from strsr.model import StrSRGenerator


class VaeEncoderGraph(nn.Module):
    def __init__(self, model: StrSRGenerator):
        super().__init__()
        self.codec = model.codec

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(image)


class DitOneStepGraph(nn.Module):
    def __init__(self, model: StrSRGenerator):
        super().__init__()
        self.model = model

    def forward(self, state: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.model.one_step(state, Condition(condition))


class VaeDecoderGraph(nn.Module):
    def __init__(self, model: StrSRGenerator):
        super().__init__()
        self.codec = model.codec

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(state)


class Float32Flux2PosEmbed(Flux2PosEmbed):
    """FLUX.2's RoPE table computed in float32: diffusers computes it in float64, which TensorRT rejects."""

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = ids.float()
        tables = [
            get_1d_rotary_pos_embed(dim, pos[..., i], theta=self.theta, repeat_interleave_real=True, use_real=True,
                                    freqs_dtype=torch.float32)  # fmt: skip
            for i, dim in enumerate(self.axes_dim)
        ]
        return torch.cat([c for c, _ in tables], dim=-1), torch.cat([s for _, s in tables], dim=-1)


@contextlib.contextmanager
def float32_rope(model: StrSRGenerator):
    """Swap FLUX.2's float64 RoPE for the float32 one while exporting (no-op for Z-Image)."""
    transformer = model.diffusers_transformer
    original = getattr(transformer, "pos_embed", None)
    if not isinstance(original, Flux2PosEmbed):
        yield
        return
    transformer.pos_embed = Float32Flux2PosEmbed(theta=original.theta, axes_dim=original.axes_dim)
    try:
        yield
    finally:
        transformer.pos_embed = original
