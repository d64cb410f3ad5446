"""Non-causal multi-head attention for the DiTs, FlashAttention-2 style, beside its PyTorch reference.

Algorithm (Dao, "FlashAttention-2", 2023; Triton's fused-attention tutorial): each program owns a block of queries
of one (batch, head) and streams key/value blocks through on-chip memory with an online softmax, so the N x N score
matrix never exists in memory. The forward stores the log-sum-exp per query; the backward recomputes the
probabilities from it in two kernels, one per key block (dK, dV) and one per query block (dQ), so no atomics.
Scores are scaled in fp32 in the forward and the backward alike (see `strsr.kernels.attention_triton`).

Layout (B, H, N, D) with any strides whose head dim is contiguous (diffusers' (B, N, H, D) projections transposed
are taken as they are), any N (tails are masked), D a power of two from 16 to 128 (FLUX.2 and Z-Image use 128);
fp32, fp16 and bf16, fp32 accumulation; an optional (B, N) key-padding mask (Z-Image pads captions in a batch).

Fused prologue (`attention_rmsnorm_rope`): the DiT's per-head RMSNorm on q and k (a weight per token segment:
FLUX.2's text tokens use `norm_added_*`, image tokens `norm_*`) and the rotary embedding (pairs (2i, 2i+1) rotated by
cos/sin, diffusers' `use_real` layout) in one Triton pass per tensor, then the plain attention kernel; the backward
recomputes norm and rotation in PyTorch (backward-only memory) around the attention backward.

Layout of this op (STYLE.md): this file holds the references (also the CPU and export path), the autograd
Functions and the public ops; the @triton.jit kernels, their per-architecture launch tables and launchers are in
`strsr.kernels.attention_triton`, imported on first use so that this module imports without Triton. Which
implementation runs follows `strsr.kernels.dispatch` (`backend=`, `use_kernel_backend()`, STRSR_KERNEL_BACKEND).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from strsr.kernels.dispatch import resolve_kernel_backend

HEAD_DIMS = (16, 32, 64, 128)  # tl.arange needs a power of two

# ----------------------------------------------------------------------------- references


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None):
    """softmax(q k^T / sqrt(D)) v, (B, H, N, D) -> (B, H, N, D); fp32 math (fp64 for fp64), result in q's dtype.

    key_mask: (B, N) bool, False for keys no query may attend to."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    compute = torch.promote_types(q.dtype, torch.float32)
    scores = torch.einsum("bhnd,bhmd->bhnm", q.to(compute), k.to(compute)) * scale
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
    return torch.einsum("bhnm,bhmd->bhnd", scores.softmax(-1), v.to(compute)).to(q.dtype)


def rmsnorm_rope_ref(
    x: torch.Tensor, weights: torch.Tensor, split: int, cos: torch.Tensor, sin: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-head RMSNorm then rotary embedding on (B, H, N, D), fp32 math, result in x's dtype.

    weights: (2, D): row 0 for tokens [0, split) (text), row 1 for [split, N) (image).
    cos, sin: (N, D), each frequency repeated for its pair; pair (2i, 2i+1) rotates as a complex number.
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(compute)
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    token_weight = torch.cat([weights[0].expand(split, -1), weights[1].expand(x.shape[2] - split, -1)])
    normed = normed * token_weight.to(compute)
    pairs = normed.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (normed * cos.to(compute) + rotated * sin.to(compute)).to(x.dtype)


def attention_rmsnorm_rope_ref(q, k, v, q_weights, k_weights, split, cos, sin, eps=1e-6):
    return attention_ref(rmsnorm_rope_ref(q, q_weights, split, cos, sin, eps),
                         rmsnorm_rope_ref(k, k_weights, split, cos, sin, eps), v)  # fmt: skip


# ----------------------------------------------------------------------------- autograd


def _triton():
    from strsr.kernels import attention_triton

    return attention_triton


class AttentionFunction(torch.autograd.Function):
    """Triton forward and backward of `attention_ref`."""

    @staticmethod
    def forward(ctx, q, k, v, key_mask):
        o, lse = _triton().attention_forward(q, k, v, key_mask)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.key_mask = key_mask
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        return (*_triton().attention_backward(*ctx.saved_tensors, grad_out, ctx.key_mask), None)


class AttentionRMSNormRoPEFunction(torch.autograd.Function):
    """Forward: the norm + RoPE pass on q and k, then attention; backward recomputes norm + RoPE in PyTorch."""

    @staticmethod
    def forward(ctx, q, k, v, q_weights, k_weights, cos, sin, split, eps):
        kernels = _triton()
        qn = kernels.rmsnorm_rope(q, q_weights, split, cos, sin, eps)
        kn = kernels.rmsnorm_rope(k, k_weights, split, cos, sin, eps)
        o, lse = kernels.attention_forward(qn, kn, v)
        ctx.save_for_backward(q, k, v, q_weights, k_weights, cos, sin, o, lse)
        ctx.split, ctx.eps = split, eps
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, q_weights, k_weights, cos, sin, o, lse = ctx.saved_tensors
        needs = [ctx.needs_input_grad[i] for i in (0, 1, 3, 4)]  # q, k, q_weights, k_weights
        with torch.enable_grad():
            inputs = [t.detach().requires_grad_(need) for t, need in zip((q, k, q_weights, k_weights), needs)]
            qn = rmsnorm_rope_ref(inputs[0], inputs[2], ctx.split, cos, sin, ctx.eps)
            kn = rmsnorm_rope_ref(inputs[1], inputs[3], ctx.split, cos, sin, ctx.eps)
        dqn, dkn, dv = _triton().attention_backward(qn.detach(), kn.detach(), v, o, lse, grad_out)
        wanted = [t for t in inputs if t.requires_grad]
        grads = iter(torch.autograd.grad([qn, kn], wanted, [dqn, dkn]) if wanted else ())
        dq, dk, dqw, dkw = (next(grads) if t.requires_grad else None for t in inputs)
        return dq, dk, dv, dqw, dkw, None, None, None, None


# ----------------------------------------------------------------------------- public ops


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share a (B, H, N, D) shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")  # fmt: skip
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"head dim {q.shape[-1]} not supported by the Triton kernel (supported: {HEAD_DIMS})")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"q, k, v must share one of fp32/fp16/bf16, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k, v must be on one device")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Non-causal attention, (B, H, N, D) -> (B, H, N, D), in q's layout. Reference path: PyTorch SDPA.

    key_mask: optional (B, N) bool, False for padding keys. backend: the kernel backend (`strsr.kernels.dispatch`).
    """
    if key_mask is not None and key_mask.shape != (q.shape[0], q.shape[2]):
        raise ValueError(f"key_mask must be (B, N) = {(q.shape[0], q.shape[2])}, got {tuple(key_mask.shape)}")
    if resolve_kernel_backend(backend, q) == "reference":
        mask = None if key_mask is None else key_mask[:, None, None, :].bool()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    _check(q, k, v)
    return AttentionFunction.apply(q, k, v, None if key_mask is None else key_mask.bool())


def attention_rmsnorm_rope(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_weights: torch.Tensor,
    k_weights: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    split: int = 0,
    eps: float = 1e-6,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """attention(rope(rmsnorm(q)), rope(rmsnorm(k)), v), the norm and rotation in one Triton pass each.

    q_weights, k_weights: (2, D) RMSNorm weights for tokens [0, split) and [split, N); cos, sin: (N, D).
    """
    if resolve_kernel_backend(backend, q) == "reference":
        qn = rmsnorm_rope_ref(q, q_weights, split, cos, sin, eps)
        kn = rmsnorm_rope_ref(k, k_weights, split, cos, sin, eps)
        return F.scaled_dot_product_attention(qn, kn, v)
    _check(q, k, v)
    n, d = q.shape[2], q.shape[3]
    if q_weights.shape != (2, d) or k_weights.shape != (2, d) or cos.shape != (n, d) or sin.shape != (n, d):
        raise ValueError(f"norm weights must be (2, {d}) and cos/sin ({n}, {d})")
    return AttentionRMSNormRoPEFunction.apply(q, k, v, q_weights, k_weights, cos, sin, split, eps)
