"""Non-causal multi-head attention for the DiTs, FlashAttention-2 style, beside its PyTorch reference.

Algorithm (Dao, "FlashAttention-2", 2023; the Triton fused-attention tutorial's structure): each program owns a
block of BLOCK_M queries of one (batch, head) and streams BLOCK_N keys/values through on-chip memory with an online
softmax (running max m and normaliser l), so the N x N score matrix never exists in memory. The forward also stores
the log-sum-exp per query; the backward recomputes the probabilities from it, in two kernels: one per key block
(dK, dV, looping over queries) and one per query block (dQ, looping over keys), so no atomics are needed.

Layout (B, H, N, D), any N (tails are masked), D a power of two from 16 to 128 (FLUX.2 and Z-Image use 128);
fp32, fp16 and bf16 inputs, fp32 accumulation. fp32 inputs use IEEE dots so the kernel matches the reference to
fp32 rounding; half inputs use the tensor cores.

Optional fused prologue (`attention_rmsnorm_rope`): the DiT's per-head RMSNorm on q and k (a weight per token
segment: FLUX.2's text tokens use `norm_added_*`, image tokens `norm_*`) and the rotary embedding (pairs (2i, 2i+1)
rotated by cos/sin, diffusers' `use_real` layout) are applied while q and k blocks are loaded, so the normalised,
rotated q and k are never written out. Its backward recomputes them (in PyTorch, backward-only memory) and reuses the
plain attention backward.

Triton is imported on first use (`_kernels()`), so importing this module needs no Triton, and the kernels honour
TRITON_INTERPRET whenever they are first built.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from strsr.kernels.dispatch import interpreting, resolve_backend

_HEAD_DIMS = (16, 32, 64, 128)


# ----------------------------------------------------------------------------- references


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None):
    """softmax(q k^T / sqrt(D)) v, (B, H, N, D) -> (B, H, N, D); fp32 math, result in q's dtype.

    key_mask: (B, N) bool, False for keys no query may attend to."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    compute = torch.promote_types(q.dtype, torch.float32)  # fp32 math, or fp64 when given fp64
    scores = torch.einsum("bhnd,bhmd->bhnm", q.to(compute), k.to(compute)) * scale
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
    return torch.einsum("bhnm,bhmd->bhnd", scores.softmax(-1), v.to(compute)).to(q.dtype)


def rmsnorm_rope_ref(
    x: torch.Tensor, weights: torch.Tensor, split: int, cos: torch.Tensor, sin: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-head RMSNorm then rotary embedding on (B, H, N, D).

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


# ----------------------------------------------------------------------------- Triton kernels


@functools.cache
def _kernels():
    # Triton resolves a kernel's callees through the module's globals, not through closures.
    global _load_qk_block, _valid_keys
    import triton
    import triton.language as tl

    @triton.jit
    def _load_qk_block(
        x_ptr, stride_n, rows, offs_d, N, w_ptr, split, cos_ptr, sin_ptr, eps,
        HEAD_DIM: tl.constexpr, PROLOGUE: tl.constexpr,
    ):  # fmt: skip
        """A (rows, HEAD_DIM) block of q or k, optionally RMS-normalised and rotated on the fly (fp32)."""
        mask = rows[:, None] < N
        x = tl.load(x_ptr + rows[:, None] * stride_n + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
        if PROLOGUE:
            inv_rms = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / HEAD_DIM + eps)
            segment = (rows >= split).to(tl.int32)[:, None] * HEAD_DIM
            w = tl.load(w_ptr + segment + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
            swap = offs_d ^ 1  # the partner of each rotation pair
            partner = tl.load(x_ptr + rows[:, None] * stride_n + swap[None, :], mask=mask, other=0.0).to(tl.float32)
            w_partner = tl.load(w_ptr + segment + swap[None, :], mask=mask, other=0.0).to(tl.float32)
            sign = tl.where((offs_d % 2) == 0, -1.0, 1.0)
            cos = tl.load(cos_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
            sin = tl.load(sin_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
            x = (x * w * cos + sign[None, :] * partner * w_partner * sin) * inv_rms[:, None]
        return x

    @triton.jit
    def _valid_keys(mask_ptr, b, cols, N, HAS_MASK: tl.constexpr):
        """Keys inside the sequence and, with a key-padding mask (B, N), not padding."""
        valid = cols < N
        if HAS_MASK:
            valid = valid & (tl.load(mask_ptr + b * N + cols, mask=valid, other=0) != 0)
        return valid

    @triton.jit
    def attention_fwd_kernel(
        q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr,
        stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
        stride_ob, stride_oh, stride_on,
        qw_ptr, kw_ptr, cos_ptr, sin_ptr, split, eps, mask_ptr,
        H, N, scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PROLOGUE: tl.constexpr,
        HAS_MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):  # fmt: skip
        tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
        start_m = tl.program_id(0)
        bh = tl.program_id(1)
        b, h = bh // H, bh % H
        q_base = q_ptr + b * stride_qb + h * stride_qh
        k_base = k_ptr + b * stride_kb + h * stride_kh
        v_base = v_ptr + b * stride_vb + h * stride_vh
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)

        q = _load_qk_block(q_base, stride_qn, offs_m, offs_d, N, qw_ptr, split, cos_ptr, sin_ptr, eps,
                           HEAD_DIM, PROLOGUE)  # fmt: skip
        q = (q * (scale * 1.4426950408889634)).to(v_ptr.dtype.element_ty)  # fold log2(e): the loop uses exp2
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        for start_n in range(0, N, BLOCK_N):
            cols = start_n + offs_n
            k = _load_qk_block(k_base, stride_kn, cols, offs_d, N, kw_ptr, split, cos_ptr, sin_ptr, eps,
                               HEAD_DIM, PROLOGUE).to(v_ptr.dtype.element_ty)  # fmt: skip
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
            s = tl.where(_valid_keys(mask_ptr, b, cols, N, HAS_MASK)[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :], mask=cols[:, None] < N, other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
            m_i = m_new
        acc = acc / l_i[:, None]
        row_ok = offs_m < N
        tl.store(lse_ptr + bh * N + offs_m, (m_i + tl.math.log2(l_i)) / 1.4426950408889634, mask=row_ok)
        o_base = o_ptr + b * stride_ob + h * stride_oh
        tl.store(o_base + offs_m[:, None] * stride_on + offs_d[None, :], acc.to(o_ptr.dtype.element_ty),
                 mask=row_ok[:, None])  # fmt: skip

    @triton.jit
    def attention_bwd_dkdv_kernel(
        q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, mask_ptr,
        stride_b, stride_h, stride_n, H, N, scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
    ):  # fmt: skip
        """One key block: dV = sum_q P^T dO, dK = scale * sum_q dS^T Q with dS = P * (dO V^T - delta)."""
        start_n = tl.program_id(0)
        bh = tl.program_id(1)
        base = (bh // H) * stride_b + (bh % H) * stride_h
        offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        col_ok = offs_n[:, None] < N
        key_ok = _valid_keys(mask_ptr, bh // H, offs_n, N, HAS_MASK)
        k = tl.load(k_ptr + base + offs_n[:, None] * stride_n + offs_d[None, :], mask=col_ok, other=0.0)
        v = tl.load(v_ptr + base + offs_n[:, None] * stride_n + offs_d[None, :], mask=col_ok, other=0.0)
        dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
        for start_m in range(0, N, BLOCK_M):
            rows = start_m + offs_m
            row_ok = rows < N
            q = tl.load(q_ptr + base + rows[:, None] * stride_n + offs_d[None, :], mask=row_ok[:, None], other=0.0)
            do = tl.load(do_ptr + base + rows[:, None] * stride_n + offs_d[None, :], mask=row_ok[:, None], other=0.0)
            lse = tl.load(lse_ptr + bh * N + rows, mask=row_ok, other=float("inf"))
            delta = tl.load(delta_ptr + bh * N + rows, mask=row_ok, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale  # (M, N)
            p = tl.exp(s - lse[:, None])
            p = tl.where(key_ok[None, :], p, 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PRECISION)
        tl.store(dk_ptr + base + offs_n[:, None] * stride_n + offs_d[None, :], (dk * scale).to(dk_ptr.dtype.element_ty),
                 mask=col_ok)  # fmt: skip
        tl.store(dv_ptr + base + offs_n[:, None] * stride_n + offs_d[None, :], dv.to(dv_ptr.dtype.element_ty),
                 mask=col_ok)  # fmt: skip

    @triton.jit
    def attention_bwd_dq_kernel(
        q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, mask_ptr,
        stride_b, stride_h, stride_n, H, N, scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
    ):  # fmt: skip
        """One query block: dQ = scale * sum_k dS K."""
        start_m = tl.program_id(0)
        bh = tl.program_id(1)
        base = (bh // H) * stride_b + (bh % H) * stride_h
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < N
        q = tl.load(q_ptr + base + offs_m[:, None] * stride_n + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        do = tl.load(do_ptr + base + offs_m[:, None] * stride_n + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        lse = tl.load(lse_ptr + bh * N + offs_m, mask=row_ok, other=float("inf"))
        delta = tl.load(delta_ptr + bh * N + offs_m, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        for start_n in range(0, N, BLOCK_N):
            cols = start_n + offs_n
            col_ok = cols[:, None] < N
            k = tl.load(k_ptr + base + cols[:, None] * stride_n + offs_d[None, :], mask=col_ok, other=0.0)
            v = tl.load(v_ptr + base + cols[:, None] * stride_n + offs_d[None, :], mask=col_ok, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale
            p = tl.exp(s - lse[:, None])
            p = tl.where(_valid_keys(mask_ptr, bh // H, cols, N, HAS_MASK)[None, :], p, 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)
        tl.store(dq_ptr + base + offs_m[:, None] * stride_n + offs_d[None, :], (dq * scale).to(dq_ptr.dtype.element_ty),
                 mask=row_ok[:, None])  # fmt: skip

    return attention_fwd_kernel, attention_bwd_dkdv_kernel, attention_bwd_dq_kernel


# ----------------------------------------------------------------------------- launchers


def _blocks(head_dim: int) -> tuple[int, int]:
    if interpreting():
        return 16, 16  # the CPU interpreter is slow: smallest tiles tl.dot accepts
    return (128, 64) if head_dim <= 64 else (64, 64)


def _dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share a (B, H, N, D) shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")  # fmt: skip
    if q.shape[-1] not in _HEAD_DIMS:
        raise ValueError(f"head dim {q.shape[-1]} not supported by the Triton kernel (supported: {_HEAD_DIMS})")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"q, k, v must share one of fp32/fp16/bf16, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k, v must be on one device")


def _forward(q, k, v, prologue=None, key_mask=None):
    """Launch the forward kernel; returns (o, lse). `prologue` = (q_weights, k_weights, split, cos, sin, eps);
    `key_mask`: (B, N) bool, False for padding keys."""
    fwd, _, _ = _kernels()
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    batch, heads, n, d = q.shape
    o = torch.empty_like(q)
    lse = torch.empty(batch * heads, n, device=q.device, dtype=torch.float32)
    block_m, block_n = _blocks(d)
    if prologue is None:
        qw = kw = cos = sin = q  # never read: PROLOGUE is off
        split, eps = 0, 0.0
    else:
        qw, kw, split, cos, sin, eps = prologue
        qw, kw, cos, sin = (t.contiguous().float() for t in (qw, kw, cos, sin))
    mask = _mask_arg(key_mask, q)
    grid = (_cdiv(n, block_m), batch * heads)
    fwd[grid](
        q, k, v, o, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
        qw, kw, cos, sin, split, eps, mask, heads, n, 1.0 / math.sqrt(d),
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n, PROLOGUE=prologue is not None,
        HAS_MASK=key_mask is not None, DOT_PRECISION=_dot_precision(q.dtype),
    )  # fmt: skip
    return o, lse


def _mask_arg(key_mask, like):
    return like if key_mask is None else key_mask.to(torch.int8).contiguous()  # `like` is never read


def _backward(q, k, v, o, lse, grad_out, key_mask=None):
    _, dkdv, dq_kernel = _kernels()
    grad_out = grad_out.contiguous()
    batch, heads, n, d = q.shape
    delta = (grad_out.float() * o.float()).sum(-1).reshape(batch * heads, n)  # rowsum(dO * O)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    block_m, block_n = _blocks(d)
    common = dict(HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n, HAS_MASK=key_mask is not None,
                  DOT_PRECISION=_dot_precision(q.dtype))  # fmt: skip
    strides, mask = q.stride()[:3], _mask_arg(key_mask, q)
    dkdv[(_cdiv(n, block_n), batch * heads)](
        q, k, v, grad_out, lse, delta, dk, dv, mask, *strides, heads, n, 1.0 / math.sqrt(d), **common
    )
    dq_kernel[(_cdiv(n, block_m), batch * heads)](
        q, k, v, grad_out, lse, delta, dq, mask, *strides, heads, n, 1.0 / math.sqrt(d), **common
    )
    return dq, dk, dv


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------- autograd


class AttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, key_mask):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        o, lse = _forward(q, k, v, key_mask=key_mask)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.key_mask = key_mask
        return o

    @staticmethod
    def backward(ctx, grad_out):
        return (*_backward(*ctx.saved_tensors, grad_out, key_mask=ctx.key_mask), None)


class AttentionRMSNormRoPEFunction(torch.autograd.Function):
    """Forward fuses norm + RoPE into the attention kernel; backward recomputes them in PyTorch."""

    @staticmethod
    def forward(ctx, q, k, v, q_weights, k_weights, cos, sin, split, eps):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        o, lse = _forward(q, k, v, prologue=(q_weights, k_weights, split, cos, sin, eps))
        ctx.save_for_backward(q, k, v, q_weights, k_weights, cos, sin, o, lse)
        ctx.split, ctx.eps = split, eps
        return o

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, q_weights, k_weights, cos, sin, o, lse = ctx.saved_tensors
        needs = [ctx.needs_input_grad[i] for i in (0, 1, 3, 4)]  # q, k, q_weights, k_weights
        with torch.enable_grad():
            inputs = [t.detach().requires_grad_(need) for t, need in zip((q, k, q_weights, k_weights), needs)]
            qn = rmsnorm_rope_ref(inputs[0], inputs[2], ctx.split, cos, sin, ctx.eps)
            kn = rmsnorm_rope_ref(inputs[1], inputs[3], ctx.split, cos, sin, ctx.eps)
        dqn, dkn, dv = _backward(qn.detach(), kn.detach(), v, o, lse, grad_out)
        wanted = [t for t in inputs if t.requires_grad]
        grads = iter(torch.autograd.grad([qn, kn], wanted, [dqn, dkn]) if wanted else ())
        dq, dk, dqw, dkw = (next(grads) if t.requires_grad else None for t in inputs)
        return dq, dk, dv, dqw, dkw, None, None, None, None


# ----------------------------------------------------------------------------- public ops


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Non-causal attention, (B, H, N, D) -> (B, H, N, D). Reference path: PyTorch SDPA.

    key_mask: optional (B, N) bool, False for padding keys (Z-Image pads captions and images in a batch).
    """
    if key_mask is not None and key_mask.shape != (q.shape[0], q.shape[2]):
        raise ValueError(f"key_mask must be (B, N) = {(q.shape[0], q.shape[2])}, got {tuple(key_mask.shape)}")
    if resolve_backend(backend, q) == "reference":
        mask = None if key_mask is None else key_mask[:, None, None, :].bool()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    _check(q, k, v)
    return AttentionFunction.apply(q, k, v, key_mask)


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
    """attention(rope(rmsnorm(q)), rope(rmsnorm(k)), v) with the norm and rotation fused into the kernel's loads.

    q_weights, k_weights: (2, D) RMSNorm weights for tokens [0, split) and [split, N); cos, sin: (N, D).
    """
    if resolve_backend(backend, q) == "reference":
        qn = rmsnorm_rope_ref(q, q_weights, split, cos, sin, eps)
        kn = rmsnorm_rope_ref(k, k_weights, split, cos, sin, eps)
        return F.scaled_dot_product_attention(qn, kn, v)
    _check(q, k, v)
    n, d = q.shape[2], q.shape[3]
    if q_weights.shape != (2, d) or k_weights.shape != (2, d) or cos.shape != (n, d) or sin.shape != (n, d):
        raise ValueError(f"norm weights must be (2, {d}) and cos/sin ({n}, {d})")
    return AttentionRMSNormRoPEFunction.apply(q, k, v, q_weights, k_weights, cos, sin, split, eps)
