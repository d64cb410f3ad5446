"""Attention processors that run strsr's attention kernels in the FLUX.2 and Z-Image DiTs, installed through
diffusers' processor mechanism (`set_processor`; diffusers' backend registry is a closed enum).

`set_attention_backend(transformer, "sdpa" | "triton", fused_prologue=False)`:
- "sdpa" restores diffusers' own processors (PyTorch SDPA);
- "triton" runs `strsr.kernels.attention` (FlashAttention-2 in Triton); with `fused_prologue` the per-head RMSNorm
  of q/k and the rotary embedding happen inside the kernel (`attention_rmsnorm_rope`);
- "reference" runs strsr's processors on PyTorch attention (the ONNX export path: no Triton, no complex numbers).
The processors pass "triton" or "reference" on as the kernel backend of `strsr.kernels.attention` (`kernel_backend`).
Both compute the same function as diffusers' Flux2AttnProcessor / Flux2ParallelSelfAttnProcessor /
ZSingleStreamAttnProcessor (tested). Z-Image's per-sample complex RoPE stays in PyTorch (no fused prologue there);
its batch padding reaches the kernel as a key-padding mask.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux2 import (
    Flux2AttnProcessor,
    Flux2ParallelSelfAttnProcessor,
    Flux2Transformer2DModel,
    _get_qkv_projections,
)
from diffusers.models.transformers.transformer_z_image import ZImageTransformer2DModel, ZSingleStreamAttnProcessor

from strsr.kernels.attention import attention, attention_rmsnorm_rope

ATTENTION_BACKENDS = ("sdpa", "triton", "reference")  # reference: strsr's processors on PyTorch attention


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2)  # (B, S, H, D) <-> (B, H, S, D)


def _attend(query, key, value, norms, rotary, fused: bool, split: int, kernel_backend: str | None) -> torch.Tensor:
    """Attention over (B, S, H, D) projections, before per-head norm and RoPE; returns (B, S, H*D).

    norms: ((q_text, k_text), (q_image, k_image)) RMSNorm modules for tokens [0, split) and [split, S).
    """
    (q_txt, k_txt), (q_img, k_img) = norms
    if fused:
        cos, sin = rotary
        q_w = torch.stack([q_txt.weight, q_img.weight])
        k_w = torch.stack([k_txt.weight, k_img.weight])
        out = attention_rmsnorm_rope(_heads_first(query), _heads_first(key), _heads_first(value), q_w, k_w,
                                     cos, sin, split, q_img.eps or 1e-6, backend=kernel_backend)  # fmt: skip
    else:
        query = torch.cat([q_txt(query[:, :split]), q_img(query[:, split:])], dim=1)
        key = torch.cat([k_txt(key[:, :split]), k_img(key[:, split:])], dim=1)
        query = apply_rotary_emb(query, rotary, sequence_dim=1)
        key = apply_rotary_emb(key, rotary, sequence_dim=1)
        out = attention(_heads_first(query), _heads_first(key), _heads_first(value), backend=kernel_backend)
    return _heads_first(out).flatten(2, 3)


class KernelFlux2AttnProcessor:
    """Double-stream blocks: text and image tokens attend jointly (text first)."""

    def __init__(self, fused_prologue: bool = False, kernel_backend: str | None = "triton"):
        self.fused_prologue, self.kernel_backend = fused_prologue, kernel_backend

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if attention_mask is not None:
            raise ValueError("the strsr attention kernel takes no attention mask")
        q, k, v, eq, ek, ev = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        q, k, v = (t.unflatten(-1, (-1, attn.head_dim)) for t in (q, k, v))
        split = 0
        if encoder_hidden_states is not None:
            eq, ek, ev = (t.unflatten(-1, (-1, attn.head_dim)) for t in (eq, ek, ev))
            split = eq.shape[1]
            q, k, v = torch.cat([eq, q], dim=1), torch.cat([ek, k], dim=1), torch.cat([ev, v], dim=1)
            norms = ((attn.norm_added_q, attn.norm_added_k), (attn.norm_q, attn.norm_k))
        else:
            norms = ((attn.norm_q, attn.norm_k), (attn.norm_q, attn.norm_k))
        out = _attend(q, k, v, norms, image_rotary_emb, self.fused_prologue, split, self.kernel_backend).to(q.dtype)
        if encoder_hidden_states is None:
            return attn.to_out[1](attn.to_out[0](out))
        text, image = out.split_with_sizes([split, out.shape[1] - split], dim=1)
        return attn.to_out[1](attn.to_out[0](image)), attn.to_add_out(text)


class KernelFlux2ParallelSelfAttnProcessor:
    """Single-stream blocks: one fused QKV + MLP-in projection, attention in parallel with the MLP."""

    def __init__(self, fused_prologue: bool = False, kernel_backend: str | None = "triton"):
        self.fused_prologue, self.kernel_backend = fused_prologue, kernel_backend

    def __call__(self, attn, hidden_states, attention_mask=None, image_rotary_emb=None):
        if attention_mask is not None:
            raise ValueError("the strsr attention kernel takes no attention mask")
        projected = attn.to_qkv_mlp_proj(hidden_states)
        qkv_width = 3 * attn.inner_dim
        qkv, mlp = projected.split([qkv_width, projected.shape[-1] - qkv_width], dim=-1)
        q, k, v = (t.unflatten(-1, (-1, attn.head_dim)) for t in qkv.chunk(3, dim=-1))
        norms = ((attn.norm_q, attn.norm_k), (attn.norm_q, attn.norm_k))
        out = _attend(q, k, v, norms, image_rotary_emb, self.fused_prologue, 0, self.kernel_backend).to(q.dtype)
        return attn.to_out(torch.cat([out, attn.mlp_act_fn(mlp)], dim=-1))


class KernelZImageAttnProcessor:
    """Z-Image blocks: per-head RMSNorm, complex RoPE per sample, attention with the batch's key-padding mask."""

    def __init__(self, kernel_backend: str | None = "triton"):
        self.kernel_backend = kernel_backend

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, freqs_cis=None):
        q, k, v = (proj(hidden_states).unflatten(-1, (attn.heads, -1)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if freqs_cis is not None:
            q, k = _rotate_complex(q, freqs_cis), _rotate_complex(k, freqs_cis)
        key_mask = None
        if attention_mask is not None:
            key_mask = attention_mask.reshape(attention_mask.shape[0], -1).bool()
        out = attention(_heads_first(q), _heads_first(k), _heads_first(v), key_mask, backend=self.kernel_backend)
        out = attn.to_out[0](_heads_first(out).flatten(2, 3).to(q.dtype))
        return attn.to_out[1](out) if len(attn.to_out) > 1 else out


def _rotate_complex(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """(B, S, H, D) rotated pairwise by (B, S, D/2) frequencies, in fp32 as Z-Image does.

    The product is written out in real arithmetic, so it also accepts the frequencies as real (cos, sin) pairs
    (B, S, D/2, 2) — the form the ONNX export uses, since the exporter cannot decompose complex numbers.
    """
    freqs = torch.view_as_real(freqs_cis) if freqs_cis.is_complex() else freqs_cis
    cos, sin = freqs[..., 0].unsqueeze(2), freqs[..., 1].unsqueeze(2)  # (B, S, 1, D/2)
    pairs = x.float().unflatten(-1, (-1, 2))
    real = pairs[..., 0] * cos - pairs[..., 1] * sin
    imag = pairs[..., 0] * sin + pairs[..., 1] * cos
    return torch.stack([real, imag], dim=-1).flatten(3).type_as(x)


def set_attention_backend(transformer: torch.nn.Module, backend: str, *, fused_prologue: bool = False) -> None:
    """Route a DiT's attention through diffusers' SDPA ("sdpa") or strsr's processors: on the Triton kernels
    ("triton") or on PyTorch attention ("reference"); the latter two are the processors' kernel backend."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
    if isinstance(transformer, ZImageTransformer2DModel):
        if fused_prologue:
            raise ValueError("the fused norm/RoPE prologue is FLUX.2-only (Z-Image's RoPE differs per sample)")
        for module in transformer.modules():
            if isinstance(getattr(module, "processor", None), (ZSingleStreamAttnProcessor, KernelZImageAttnProcessor)):
                sdpa = backend == "sdpa"
                module.set_processor(ZSingleStreamAttnProcessor() if sdpa else KernelZImageAttnProcessor(backend))
        return
    if not isinstance(transformer, Flux2Transformer2DModel):
        raise ValueError(f"attention backends are wired for FLUX.2 and Z-Image, not {type(transformer).__name__}")
    for block in transformer.transformer_blocks:
        block.attn.set_processor(
            Flux2AttnProcessor() if backend == "sdpa" else KernelFlux2AttnProcessor(fused_prologue, backend)
        )
    for block in transformer.single_transformer_blocks:
        single = Flux2ParallelSelfAttnProcessor() if backend == "sdpa" else None
        block.attn.set_processor(single or KernelFlux2ParallelSelfAttnProcessor(fused_prologue, backend))
