# Triton kernels and launchers of `strsr.kernels.attention` (the header, references, autograd and public ops live
# there). Importing this module needs triton; `strsr.kernels.attention` imports it on first use.
#
# Forward (Dao, "FlashAttention-2", 2023; the structure of Triton's fused-attention tutorial): a program owns BLOCK_M
# queries of one (batch, head) and streams BLOCK_N keys/values with an online softmax in the base-2 domain. The
# scores S = q k^T are accumulated in fp32 from the unscaled inputs and scaled in fp32 (qk_scale = log2(e) / sqrt(D))
# in the forward and in both backward kernels, so the backward recomputes exactly the probabilities the forward
# normalised (folding the scale into q before rounding q to fp16/bf16 made fp16 gradients 3-7x SDPA's error at
# logits of 15-30). The key-bounds mask is applied only to the last, partial key block (`_fwd_inner`'s TAIL); a
# key-padding mask, when given, to every block.
# Backward: delta = rowsum(dO * O) (`_bwd_preprocess_kernel`), then one kernel per key block (dK, dV, looping over
# queries) and one per query block (dQ, looping over keys): no atomics, each with its own tile table.
# `_rmsnorm_rope_kernel` is the fused prologue's pre-pass: the per-head RMSNorm (a weight row per token segment) and
# the rotary embedding applied once per q and k row, in fp32, written in the input dtype; attention then runs the
# plain kernels. Applying them inside the attention loads instead redid the key rows' work for every query block and
# triple-buffered fp32 weights/cos/sin tiles in shared memory (368 KiB at D = 128 on sm_90, over its 227 KiB).
#
# Launch configurations: per architecture (`strsr.kernels.targets`), because the shared memory per block differs
# (sm_80 163 KiB, sm_86/89 99 KiB, sm_90 227 KiB); each table's entries are compiled for its architecture by
# tests/test_kernel_targets.py, which asserts they fit and do not spill. On a GPU Triton's autotuner picks among an
# architecture's entries once per (N, D, mask, dtype); under TRITON_INTERPRET=1 the smallest tiles tl.dot accepts.
# Dot precision (one policy, `dot_precision`): fp16/bf16 operands use the tensor cores with fp32 accumulation; fp32
# operands use "tf32x3" (three TF32 products, fp32-level error): plain "ieee" fp32 dots fall back to FMA loops whose
# accumulators spill 14-69 KB per thread, and single TF32 (~1e-3 relative error) would not be fp32 attention.

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from strsr.kernels.dispatch import interpreting
from strsr.kernels.targets import device_table_arch

LOG2E = 1.4426950408889634


def dot_precision(dtype: torch.dtype) -> str:
    """`tl.dot` input precision for operands of `dtype` (the one policy of strsr's kernels, see the header)."""
    return "tf32x3" if dtype == torch.float32 else "ieee"


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _fwd_inner(
    acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, keep_ptr, lo, hi, N, qk_scale, offs_n, offs_d,
    BLOCK_N: tl.constexpr, TAIL: tl.constexpr, HAS_MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Online-softmax update over the key blocks [lo, hi); TAIL: the one partial block, bounds-masked."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = k_base + cols[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :]
        if TAIL:
            k = tl.load(k_ptrs, mask=cols[:, None] < N, other=0.0)
            v = tl.load(v_ptrs, mask=cols[:, None] < N, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (M, N) fp32, log2 domain
        if TAIL:
            s = tl.where(cols[None, :] < N, s, float("-inf"))
        if HAS_MASK:
            if TAIL:
                keep = tl.load(keep_ptr + cols, mask=cols < N, other=0)
            else:
                keep = tl.load(keep_ptr + cols)
            s = tl.where(keep[None, :] != 0, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        if HAS_MASK:  # a block of padding keys before any valid one: keep exp2(-inf - -inf) from making NaNs
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_use = m_new
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, keep_ptr,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on,
    H, N, qk_scale,
    HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """o = softmax(q k^T / sqrt(D)) v for BLOCK_M queries of one (b, h); lse (base 2) per query for the backward."""
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0, "tl.dot tiles are multiples of 16")
    tl.static_assert(HEAD_DIM % 16 == 0, "tl.dot needs a head dim that is a multiple of 16")
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)  # fmt: skip
    k_base = k_ptr + b * stride_kb + h * stride_kh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    keep_base = keep_ptr + b * N
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    n_full = N - N % BLOCK_N
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, keep_base, 0, n_full, N,
                               qk_scale, offs_n, offs_d, BLOCK_N, False, HAS_MASK, DOT_PRECISION)  # fmt: skip
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, keep_base, n_full, N, N,
                               qk_scale, offs_n, offs_d, BLOCK_N, True, HAS_MASK, DOT_PRECISION)  # fmt: skip
    acc = acc / l_i[:, None]
    tl.store(lse_ptr + bh.to(tl.int64) * N + offs_m, m_i + tl.math.log2(l_i), mask=row_ok)
    tl.store(o_ptr + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :],
             acc.to(o_ptr.dtype.element_ty), mask=row_ok[:, None])  # fmt: skip


@triton.jit
def _bwd_preprocess_kernel(
    o_ptr, do_ptr, delta_ptr, stride_ob, stride_oh, stride_on, stride_db, stride_dh, stride_dn, H, N,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """delta = rowsum(dO * O) in fp32, (B * H, N)."""
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N
    o = tl.load(o_ptr + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :],
                mask=row_ok[:, None], other=0.0).to(tl.float32)  # fmt: skip
    do = tl.load(do_ptr + b * stride_db + h * stride_dh + offs_m[:, None] * stride_dn + offs_d[None, :],
                 mask=row_ok[:, None], other=0.0).to(tl.float32)  # fmt: skip
    tl.store(delta_ptr + bh.to(tl.int64) * N + offs_m, tl.sum(o * do, axis=1), mask=row_ok)


@triton.jit
def _dkdv_inner(
    dk, dv, k, v, q_base, do_base, stride_qn, stride_dn, lse_base, delta_base, lo, hi, N, qk_scale, offs_m, offs_d,
    BLOCK_M: tl.constexpr, TAIL: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m
        q_ptrs = q_base + rows[:, None] * stride_qn + offs_d[None, :]
        do_ptrs = do_base + rows[:, None] * stride_dn + offs_d[None, :]
        if TAIL:  # rows past N: q = dO = 0 zero their terms of dV and dK (and lse = +inf their P)
            q = tl.load(q_ptrs, mask=rows[:, None] < N, other=0.0)
            do = tl.load(do_ptrs, mask=rows[:, None] < N, other=0.0)
            lse = tl.load(lse_base + rows, mask=rows < N, other=float("inf"))
            delta = tl.load(delta_base + rows, mask=rows < N, other=0.0)
        else:
            q = tl.load(q_ptrs)
            do = tl.load(do_ptrs)
            lse = tl.load(lse_base + rows)
            delta = tl.load(delta_base + rows)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (N_blk, M_blk) = S^T, fp32
        p_t = tl.math.exp2(s_t - lse[None, :])
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, keep_ptr,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_db, stride_dh, stride_dn, stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn,
    H, N, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One key block: dV = P^T dO, dK = sm_scale * dS^T Q, dS = P * (dO V^T - delta), looping over all queries."""
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0, "tl.dot tiles are multiples of 16")
    start_n, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = offs_n < N  # rows of this key block past N compute garbage that is never stored
    k = tl.load(k_ptr + b * stride_kb + h * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :],
                mask=col_ok[:, None], other=0.0)  # fmt: skip
    v = tl.load(v_ptr + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :],
                mask=col_ok[:, None], other=0.0)  # fmt: skip
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    q_base = q_ptr + b * stride_qb + h * stride_qh
    do_base = do_ptr + b * stride_db + h * stride_dh
    lse_base, delta_base = lse_ptr + bh.to(tl.int64) * N, delta_ptr + bh.to(tl.int64) * N
    m_full = N - N % BLOCK_M
    dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, stride_qn, stride_dn, lse_base, delta_base, 0, m_full, N,
                         qk_scale, offs_m, offs_d, BLOCK_M, False, DOT_PRECISION)  # fmt: skip
    dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, stride_qn, stride_dn, lse_base, delta_base, m_full, N, N,
                         qk_scale, offs_m, offs_d, BLOCK_M, True, DOT_PRECISION)  # fmt: skip
    if HAS_MASK:  # padding keys: P is 0 in their column, so are their gradients
        keep = tl.load(keep_ptr + b * N + offs_n, mask=col_ok, other=0) != 0
        dk = tl.where(keep[:, None], dk, 0.0)
        dv = tl.where(keep[:, None], dv, 0.0)
    tl.store(dk_ptr + b * stride_dkb + h * stride_dkh + offs_n[:, None] * stride_dkn + offs_d[None, :],
             (dk * sm_scale).to(dk_ptr.dtype.element_ty), mask=col_ok[:, None])  # fmt: skip
    tl.store(dv_ptr + b * stride_dvb + h * stride_dvh + offs_n[:, None] * stride_dvn + offs_d[None, :],
             dv.to(dv_ptr.dtype.element_ty), mask=col_ok[:, None])  # fmt: skip


@triton.jit
def _dq_inner(
    dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, keep_ptr, lo, hi, N, qk_scale, offs_n, offs_d,
    BLOCK_N: tl.constexpr, TAIL: tl.constexpr, HAS_MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = k_base + cols[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :]
        if TAIL:
            k = tl.load(k_ptrs, mask=cols[:, None] < N, other=0.0)
            v = tl.load(v_ptrs, mask=cols[:, None] < N, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        p = tl.math.exp2(s - lse[:, None])  # keys past N: k = v = 0 zero their dS K term, no bounds mask needed
        if HAS_MASK:
            if TAIL:
                keep = tl.load(keep_ptr + cols, mask=cols < N, other=0)
            else:
                keep = tl.load(keep_ptr + cols)
            p = tl.where(keep[None, :] != 0, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)
    return dq


@triton.jit
def _bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, keep_ptr,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_db, stride_dh, stride_dn, stride_dqb, stride_dqh, stride_dqn,
    H, N, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, HAS_MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One query block: dQ = sm_scale * dS K, looping over all keys."""
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0, "tl.dot tiles are multiples of 16")
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)  # fmt: skip
    do = tl.load(do_ptr + b * stride_db + h * stride_dh + offs_m[:, None] * stride_dn + offs_d[None, :],
                 mask=row_ok[:, None], other=0.0)  # fmt: skip
    lse = tl.load(lse_ptr + bh.to(tl.int64) * N + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(delta_ptr + bh.to(tl.int64) * N + offs_m, mask=row_ok, other=0.0)
    k_base = k_ptr + b * stride_kb + h * stride_kh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    keep_base = keep_ptr + b * N
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    n_full = N - N % BLOCK_N
    dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, keep_base, 0, n_full, N, qk_scale,
                   offs_n, offs_d, BLOCK_N, False, HAS_MASK, DOT_PRECISION)  # fmt: skip
    dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, keep_base, n_full, N, N, qk_scale,
                   offs_n, offs_d, BLOCK_N, True, HAS_MASK, DOT_PRECISION)  # fmt: skip
    tl.store(dq_ptr + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqn + offs_d[None, :],
             (dq * sm_scale).to(dq_ptr.dtype.element_ty), mask=row_ok[:, None])  # fmt: skip


@triton.jit
def _rmsnorm_rope_kernel(
    x_ptr, w_ptr, cos_ptr, sin_ptr, out_ptr, stride_xb, stride_xh, stride_xn, stride_ob, stride_oh, stride_on,
    H, N, split, eps,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """out = rope(rmsnorm(x) * w[segment]) for BLOCK_N rows of one (b, h), fp32 math; cos/sin (N, D) contiguous."""
    start_n, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    rows = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    swap = offs_d ^ 1  # the partner of each rotation pair (2i, 2i + 1)
    mask = rows[:, None] < N
    x_rows = x_ptr + b * stride_xb + h * stride_xh + rows[:, None] * stride_xn
    x = tl.load(x_rows + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    partner = tl.load(x_rows + swap[None, :], mask=mask, other=0.0).to(tl.float32)
    inv_rms = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / HEAD_DIM + eps)
    segment = (rows >= split).to(tl.int32)[:, None] * HEAD_DIM  # weight row 0 for text tokens, 1 for image tokens
    w = tl.load(w_ptr + segment + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    w_partner = tl.load(w_ptr + segment + swap[None, :], mask=mask, other=0.0).to(tl.float32)
    cos = tl.load(cos_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    sin = tl.load(sin_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    sign = tl.where((offs_d % 2) == 0, -1.0, 1.0)  # rotate_half: (x0, x1) -> (-x1, x0)
    out = (x * w * cos + sign[None, :] * partner * w_partner * sin) * inv_rms[:, None]
    tl.store(out_ptr + b * stride_ob + h * stride_oh + rows[:, None] * stride_on + offs_d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=mask)  # fmt: skip


# ----------------------------------------------------------------------------- launch configurations


def _configs(*entries: tuple[int, int, int, int]) -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in entries]


# (BLOCK_M, BLOCK_N, num_warps, num_stages) per architecture; fp16/bf16 ("half") and fp32 operands. Each entry is
# compiled by tests/test_kernel_targets.py at D = 128 (the largest head dim; shared memory and registers only shrink
# with D) for its architecture and must fit its shared memory; half entries must not spill at all, fp32 ones (tf32x3
# splits every operand in two, and D = 128 tiles sit at the 255-register limit, where each ptxas release moves a few
# bytes) at most FP32_SPILL_BOUND bytes per thread. Chosen among the configurations that met that with Triton 3.6 and
# 3.8 from a sweep of tile, warp and stage counts (the tables' first entries are the likeliest winners).
CONFIGS = {
    "fwd": {
        "half": {
            90: _configs((128, 64, 8, 3), (128, 64, 8, 4), (64, 64, 4, 3), (64, 64, 4, 4)),
            80: _configs((128, 64, 8, 4), (64, 64, 4, 3), (64, 64, 4, 4), (64, 128, 4, 2)),
            86: _configs((128, 64, 8, 3), (64, 128, 4, 2), (64, 32, 4, 3)),
        },
        "fp32": {arch: _configs((16, 32, 8, 2), (16, 16, 4, 2)) for arch in (90, 80, 86)},
    },
    "dkdv": {
        "half": {
            90: _configs((64, 64, 8, 3), (64, 64, 8, 2), (32, 128, 8, 3), (32, 128, 8, 2)),
            80: _configs((64, 64, 8, 3), (64, 64, 8, 2), (32, 64, 8, 3)),
            86: _configs((64, 64, 8, 2), (32, 64, 8, 3), (32, 64, 8, 2)),
        },
        "fp32": {arch: _configs((16, 16, 4, 2), (16, 16, 4, 3)) for arch in (90, 80, 86)},
    },
    "dq": {
        "half": {
            90: _configs((128, 64, 8, 2), (128, 64, 8, 3), (128, 32, 8, 3), (64, 64, 8, 3)),
            80: _configs((128, 32, 8, 3), (64, 64, 8, 3), (64, 64, 4, 2), (64, 128, 8, 2)),
            86: _configs((128, 32, 8, 3), (64, 64, 8, 2), (64, 32, 8, 3)),
        },
        "fp32": {
            90: _configs((32, 16, 8, 2), (16, 32, 8, 2)),
            80: _configs((16, 32, 8, 2), (32, 32, 8, 2)),
            86: _configs((32, 16, 8, 2), (32, 32, 8, 2)),
        },
    },
}
FP32_SPILL_BOUND = 32
_INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16}  # the CPU interpreter is slow: the smallest tiles tl.dot takes
_KERNELS = {"fwd": _fwd_kernel, "dkdv": _bwd_dkdv_kernel, "dq": _bwd_dq_kernel}
ROWS_PER_PROGRAM = 32  # preprocess and prologue: memory-bound, (32, D) tiles


@functools.cache
def _tuned(name: str, dtype_class: str, arch: int):
    """Kernel `name` autotuned over architecture `arch`'s table (the dtype is part of Triton's tuning key)."""
    return triton.autotune(CONFIGS[name][dtype_class][arch], key=["N", "HEAD_DIM", "HAS_MASK"])(_KERNELS[name])


def _launch(name: str, grid_dim: int, num_bh: int, args: tuple, **constexprs) -> None:
    """Launch kernel `name`: the autotuned table for this GPU, or the interpreter's fixed tiles."""
    dtype_class = "fp32" if args[0].dtype == torch.float32 else "half"
    block = "BLOCK_N" if name == "dkdv" else "BLOCK_M"
    if interpreting():
        grid = (triton.cdiv(grid_dim, _INTERPRETER_CONFIG[block]), num_bh)
        _KERNELS[name][grid](*args, **constexprs, **_INTERPRETER_CONFIG)
        return
    kernel = _tuned(name, dtype_class, device_table_arch(args[0].device))
    kernel[lambda meta: (triton.cdiv(grid_dim, meta[block]), num_bh)](*args, **constexprs)


# ----------------------------------------------------------------------------- launchers


def _unit_last_stride(x: torch.Tensor) -> torch.Tensor:
    """x itself when its head dim is contiguous (the kernels take the other strides), else a contiguous copy."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _keep_arg(key_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(B, N) key-padding mask as int8 for the kernels (`like`, never read, when there is none)."""
    return like if key_mask is None else key_mask.contiguous().view(torch.int8)


def _scales(d: int) -> tuple[float, float]:
    return LOG2E / math.sqrt(d), 1.0 / math.sqrt(d)  # qk_scale (base-2 softmax), sm_scale


def _strides(*tensors: torch.Tensor) -> tuple[int, ...]:
    return tuple(stride for t in tensors for stride in t.stride()[:3])  # (b, h, n) of each; the head dim is 1


def _fwd_args(q, k, v, o, lse, keep) -> tuple:
    return (q, k, v, o, lse, keep, *_strides(q, k, v, o), q.shape[1], q.shape[2], _scales(q.shape[3])[0])


def _dkdv_args(q, k, v, do, lse, delta, dk, dv, keep) -> tuple:
    return (q, k, v, do, lse, delta, dk, dv, keep, *_strides(q, k, v, do, dk, dv), q.shape[1], q.shape[2],
            *_scales(q.shape[3]))  # fmt: skip


def _dq_args(q, k, v, do, lse, delta, dq, keep) -> tuple:
    return (q, k, v, do, lse, delta, dq, keep, *_strides(q, k, v, do, dq), q.shape[1], q.shape[2],
            *_scales(q.shape[3]))  # fmt: skip


def _constexprs(q: torch.Tensor, has_mask: bool) -> dict:
    return dict(HEAD_DIM=q.shape[3], HAS_MASK=has_mask, DOT_PRECISION=dot_precision(q.dtype))


def attention_forward(q, k, v, key_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, lse): o like q (B, H, N, D) in q's layout, lse (B, H, N) fp32 in the base-2 domain."""
    q, k, v = (_unit_last_stride(t) for t in (q, k, v))
    batch, heads, n, _ = q.shape
    o = torch.empty_like(q)  # a transposed (B, N, H, D) view in, the same layout out: no copy either side
    lse = torch.empty((batch, heads, n), device=q.device, dtype=torch.float32)
    _launch("fwd", n, batch * heads, _fwd_args(q, k, v, o, lse, _keep_arg(key_mask, q)),
            **_constexprs(q, key_mask is not None))  # fmt: skip
    return o, lse


def attention_backward(q, k, v, o, lse, grad_out, key_mask=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of `attention_forward`'s o for an upstream gradient grad_out (B, H, N, D)."""
    q, k, v, o, grad_out = (_unit_last_stride(t) for t in (q, k, v, o, grad_out))
    batch, heads, n, d = q.shape
    delta = torch.empty_like(lse)
    _bwd_preprocess_kernel[(triton.cdiv(n, ROWS_PER_PROGRAM), batch * heads)](
        o, grad_out, delta, *_strides(o, grad_out), heads, n, HEAD_DIM=d, BLOCK_M=ROWS_PER_PROGRAM, num_warps=4
    )
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    keep, constexprs = _keep_arg(key_mask, q), _constexprs(q, key_mask is not None)
    _launch("dkdv", n, batch * heads, _dkdv_args(q, k, v, grad_out, lse, delta, dk, dv, keep), **constexprs)
    _launch("dq", n, batch * heads, _dq_args(q, k, v, grad_out, lse, delta, dq, keep), **constexprs)
    return dq, dk, dv


def rmsnorm_rope(x, weights, split, cos, sin, eps) -> torch.Tensor:
    """`strsr.kernels.attention.rmsnorm_rope_ref` in one pass: (B, H, N, D) -> like x, in x's dtype and layout."""
    x = _unit_last_stride(x)
    batch, heads, n, d = x.shape
    weights, cos, sin = (t.float().contiguous() for t in (weights, cos, sin))
    out = torch.empty_like(x)
    _rmsnorm_rope_kernel[(triton.cdiv(n, ROWS_PER_PROGRAM), batch * heads)](
        x, weights, cos, sin, out, *_strides(x, out), heads, n, split, eps, HEAD_DIM=d, BLOCK_N=ROWS_PER_PROGRAM,
        num_warps=4,
    )  # fmt: skip
    return out


# ----------------------------------------------------------------------------- what the CPU guard compiles


def compile_cases(arch: int):
    """(label, kernel, args, kwargs, spill bound) of every configuration shipped for `arch` (a CONFIGS key), as launched
    at the FLUX.2 1024-tile shape (B 1, H 24, N 4608, D 128) on meta tensors in diffusers' (B, N, H, D) layout.

    D = 128 is the largest head dim: shared memory and registers only shrink with D. Each config compiles without
    and with the key-padding mask, the latter at an N that is not a multiple of 16 (no divisibility specialisation),
    for bf16 (fp16 compiles to the same tiles) and fp32 operands."""
    heads, d = 24, 128
    for dtype_class, dtype in (("half", torch.bfloat16), ("fp32", torch.float32)):
        spill_bound = FP32_SPILL_BOUND if dtype_class == "fp32" else 0
        for has_mask in (False, True):
            n = 4608 + 3 * has_mask
            q = torch.empty((1, n, heads, d), dtype=dtype, device="meta").transpose(1, 2)
            lse = torch.empty((1, heads, n), device="meta")
            keep = torch.empty((1, n), dtype=torch.int8, device="meta") if has_mask else q
            args = {"fwd": _fwd_args(q, q, q, q, lse, keep), "dkdv": _dkdv_args(q, q, q, q, lse, lse, q, q, keep),
                    "dq": _dq_args(q, q, q, q, lse, lse, q, keep)}  # fmt: skip
            for name, tables in CONFIGS.items():
                for config in tables[dtype_class][arch]:
                    tiles = f"{config.kwargs['BLOCK_M']}x{config.kwargs['BLOCK_N']}"
                    label = f"{name} {dtype_class} mask={int(has_mask)} {tiles} w{config.num_warps}"
                    yield (f"{label} s{config.num_stages}", _KERNELS[name], args[name],
                           {**_constexprs(q, has_mask), **config.all_kwargs()}, spill_bound)  # fmt: skip
        rows = dict(num_warps=4)
        yield (f"bwd_preprocess {dtype_class}", _bwd_preprocess_kernel, (q, q, lse, *_strides(q, q), heads, n),
               dict(HEAD_DIM=d, BLOCK_M=ROWS_PER_PROGRAM, **rows), 0)  # fmt: skip
        w = torch.empty((2, d), device="meta")
        yield (f"rmsnorm_rope {dtype_class}", _rmsnorm_rope_kernel, (q, w, w, w, q, *_strides(q, q), heads, n, 512,
               1e-6), dict(HEAD_DIM=d, BLOCK_N=ROWS_PER_PROGRAM, **rows), 0)  # fmt: skip
