"""The one-step pipeline cut into exportable stages, each a plain nn.Module over tensors.

    vae_encoder:  upsampled LR tile (B, 3, H, W) in [-1, 1] -> state (B, C, h, w)   (family normalisation included;
                  a sampling codec also takes the posterior noise (B, C_vae, H/s, W/s), drawn by the caller)
    dit_onestep:  state, condition tokens (B, L, D) -> z0 = state - t1 * G(state, t1, c)   (Euler step folded in)
    vae_decoder:  state -> image (B, 3, H, W), nominally in [-1, 1]
    projector:    VLM features (B, L, W) -> condition tokens (B, L, D)   (VLM conditioning only)

The state is the spatial tensor the Euler step acts on (`strsr.model.latents`); FLUX.2's packed tokens are its row-major
flattening, done inside the DiT graph. Attention is always the PyTorch reference path here, never a Triton op.
"""

from __future__ import annotations

import contextlib

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_flux2 import Flux2PosEmbed
from diffusers.models.transformers.transformer_z_image import ZImageTransformer2DModel
from torch import nn

from strsr.model.backbones import Condition
from strsr.model.generator import StrSRGenerator


class VaeEncoderGraph(nn.Module):
    def __init__(self, model: StrSRGenerator):
        super().__init__()
        self.codec = model.codec

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.codec.samples and noise is None:
            raise ValueError("this codec samples its latent: pass the posterior noise")
        return self.codec.encode(image, noise=noise)


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


class ProjectorGraph(nn.Module):
    """The VLM adapter (f_adapt): VLM features (B, L, W) -> conditioning tokens (B, L, D). The VLM itself stays in
    PyTorch."""

    def __init__(self, model: StrSRGenerator):
        super().__init__()
        self.adapter = model.conditioning.adapter

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.adapter(features)


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


class RealZImageRope:
    """Z-Image's RoPE table as real (cos, sin) pairs, computed up front.

    diffusers' RopeEmbedder builds complex64 tables lazily on first call; the exporter can neither decompose
    complex numbers nor keep a table created while tracing. Same values: (cos, sin) are the table's (real, imag).
    """

    def __init__(self, embedder):
        tables = embedder.precompute_freqs_cis(embedder.axes_dims, embedder.axes_lens, theta=embedder.theta)
        self.tables = [torch.view_as_real(t) for t in tables]  # each (positions, d/2, 2)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()  # ONNX Runtime's GatherND takes int64 indices only
        return torch.cat([table[ids[:, i]] for i, table in enumerate(self.tables)], dim=-2)


@contextlib.contextmanager
def exportable(model: StrSRGenerator):
    """While exporting: FLUX.2's float64 RoPE becomes float32 (TensorRT rejects float64); Z-Image's complex RoPE
    becomes real (cos, sin) pairs, with attention processors that rotate in real arithmetic. Restored after."""
    from strsr.model.attention_processors import set_attention_backend

    transformer = model.diffusers_transformer
    if isinstance(transformer, ZImageTransformer2DModel):
        original, processors = transformer.rope_embedder, _processors(transformer)
        transformer.rope_embedder = RealZImageRope(original)
        set_attention_backend(transformer, "reference")
        try:
            yield
        finally:
            transformer.rope_embedder = original
            for module, processor in processors:
                module.set_processor(processor)
        return
    original = transformer.pos_embed
    transformer.pos_embed = Float32Flux2PosEmbed(theta=original.theta, axes_dim=original.axes_dim)
    try:
        yield
    finally:
        transformer.pos_embed = original


def _processors(transformer):
    return [(m, m.processor) for m in transformer.modules() if hasattr(m, "processor") and hasattr(m, "set_processor")]
