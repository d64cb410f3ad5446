# Spectral sliced-Wasserstein distance of one FDL layer, fused in Triton.
#
# Algorithm (Ni et al., "Misalignment-Robust Frequency Distribution Loss for Image Transformation", CVPR 2024;
# github.com/eezkni/FDL): for complex spectra X, Y of shape (B, C, H, W) and P unit filters w_k of shape (C, kh, kw),
#     score[b] = SW(|X|, |Y|) + phase_weight * SW(angle X, angle Y)
#     SW(a, b) = mean_{k, n} | sort_n(conv2d(a, w_k))[n] - sort_n(conv2d(b, w_k))[n] |     (valid conv, stride 1)
# i.e. per sample, component and projection, the 1-D Wasserstein-1 distance between the L = (H-kh+1)(W-kw+1)
# projected values of x and of y, averaged over the P slices.
#
# Triton path, per chunk of projections (the chunk bounds the (B, 2, P_chunk, L) buffers to _CHUNK_ELEMENTS):
#   1. `_project_kernel`: implicit GEMM (im2col in registers). A tile of BLOCK_L output positions x BLOCK_K entries
#      of the flattened (c, i, j) patch is gathered from `view_as_real(spec)`; |z| and angle z are computed in
#      registers (hypot without under/overflow, atan2 by octant reduction + odd series: libdevice's atan2 does not
#      run under the interpreter) and fed to two `tl.dot`s against one (BLOCK_K, BLOCK_P) filter tile, fp32
#      (fp64) accumulation. No amplitude or phase tensor is ever written; the output is (B, 2, P_chunk, L).
#   2. `torch.sort` along L, between kernels: a `tl.sort` sorts one register block, and L reaches ~1M per row.
#   3. `_sorted_distance_kernel`: sum |sorted_x - sorted_y| per block (partials summed by torch, deterministic), and
#      when a gradient is needed, sign(sorted_x - sorted_y) scattered through the sort permutation to the unsorted
#      position as int8. Besides its inputs, that int8 tensor is all the backward keeps (1 byte per projected value;
#      the reference keeps int64 permutations, the |.| sign input and the amplitude/phase maps).
#   backward, `_project_transpose_kernel`: the transposed implicit GEMM (conv_transpose) of the signs against the
#      filters, scaled by grad_out * {1, phase_weight} / (P L), with the amplitude/phase Jacobians of
#      `AmplitudePhaseFunction` applied in the epilogue; it writes d/d(re, im) straight into the complex gradient.
#      torch.fft's autograd does the rest. spec_y gets the same treatment (with -sign) when it requires grad.
#
# Limits: float32/float64 spectra (complex64/complex128); no gradient to the projections; no double backward. fp32
# `tl.dot` uses TF32 exactly when torch.backends.cudnn.allow_tf32 is set (what the reference's conv2d uses on CUDA).
# Why this design: the cost is the num_proj-wide projection of 64-channel full-resolution spectra, a GEMM; fusing
# the elementwise amplitude/phase into its operand load and the reduction + backward routing around the sort
# removes every intermediate except the sort's own buffers, which chunking over projections keeps bounded.

from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F

from strsr.kernels.dispatch import interpreting, resolve_backend

_CHUNK_ELEMENTS = 1 << 27  # projected values per chunk: ~2.7 GB of fp32 buffers + sort indices at the peak
# Saved signs: int8 for fp32; Triton 3.8's fp64 MMA rejects operands converted from 8/16-bit integers ("fp64 don't
# support largeK MMA", found by compiling for sm_90), so the fp64 path keeps them in fp32.
_SIGN_DTYPES = {torch.float32: torch.int8, torch.float64: torch.float32}


class AmplitudePhaseFunction(torch.autograd.Function):
    """(|z|, angle z) of a complex tensor, with a gradient that stays finite near z = 0.

    torch's own backward is grad * z / |z| for abs and grad * i z / |z|^2 for angle, zero only at z == 0 exactly.
    For tiny non-zero z the complex division underflows: angle's gradient is NaN below |z| ~ 1e-19 (complex64;
    ~1e-154 for complex128) and abs's for subnormal |z|. FFTs of ReLU features can produce such bins (cancelling
    sums, near-zero channels), and one NaN poisons a training step. This backward evaluates the same formulas in
    real arithmetic: abs -> g (re, im) / |z| wherever |z| > 0; angle -> g (-im, re) / |z|^2 wherever |z|^2 is a
    normal float (|z| > sqrt(finfo.tiny)), else 0 — the phase of a bin that small is rounding noise, and 0 is also
    torch's value at z == 0. Elsewhere it equals torch's gradient.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(z)
        return z.abs(), z.angle()

    @staticmethod
    def backward(ctx, grad_amp: torch.Tensor | None, grad_phase: torch.Tensor | None) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        r = z.abs()
        safe_r = torch.where(r > 0, r, 1.0)
        # (cos, sin) of the phase by direct division: bounded by 1 even for subnormal z, where 1 / r is inf.
        unit_re, unit_im = z.real / safe_r, z.imag / safe_r
        grad_re, grad_im = torch.zeros_like(r), torch.zeros_like(r)
        if grad_amp is not None:
            grad_re, grad_im = grad_re + grad_amp * unit_re, grad_im + grad_amp * unit_im
        if grad_phase is not None:
            scale = torch.where(r > torch.finfo(r.dtype).tiny ** 0.5, grad_phase / safe_r, 0.0)  # g / |z|
            grad_re, grad_im = grad_re - scale * unit_im, grad_im + scale * unit_re
        return torch.complex(grad_re, grad_im)


def _check_inputs(spec_x: torch.Tensor, spec_y: torch.Tensor, projections: torch.Tensor) -> None:
    if not (spec_x.is_complex() and spec_y.is_complex()):
        raise TypeError("spec_x and spec_y must be complex spectra (torch.fft.fftn outputs)")
    if spec_x.shape != spec_y.shape or spec_x.dim() != 4:
        raise ValueError(
            f"spectra must share one (B, C, H, W) shape, got {tuple(spec_x.shape)} and {tuple(spec_y.shape)}"
        )
    if projections.dim() != 4 or projections.shape[1] != spec_x.shape[1]:
        raise ValueError(f"projections {tuple(projections.shape)} do not fit {spec_x.shape[1]} channels")


def _sorted_projection_distance(a: torch.Tensor, b: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Mean over projections and positions of |sort(proj * a) - sort(proj * b)|; (N, C, H, W) x2 -> (N,)."""
    pa = torch.sort(F.conv2d(a, proj).flatten(2), dim=-1).values  # (N, P, L)
    pb = torch.sort(F.conv2d(b, proj).flatten(2), dim=-1).values
    return (pa - pb).abs().mean(dim=(1, 2))


def spectral_sliced_wasserstein_ref(
    spec_x: torch.Tensor, spec_y: torch.Tensor, projections: torch.Tensor, phase_weight: float = 1.0
) -> torch.Tensor:
    """FDL score of one layer: SW(|X|, |Y|) + phase_weight * SW(angle X, angle Y), per sample.

    spec_x, spec_y: complex tensors (B, C, H, W), complex64 or complex128, as `torch.fft.fftn(feat, dim=(-2, -1))`
        returns them (complex, not `view_as_real`: the fused kernel takes `torch.view_as_real` of these itself).
    projections: real (P, C, p, p) of the spectra's real dtype, each filter of unit L2 norm; H, W >= p.
    Returns (B,) in the real dtype. Differentiable in both spectra; pass a spec_y without grad for a target.
    """
    _check_inputs(spec_x, spec_y, projections)
    b = spec_x.shape[0]
    amp_x, phase_x = AmplitudePhaseFunction.apply(spec_x)
    amp_y, phase_y = AmplitudePhaseFunction.apply(spec_y)
    # Amplitude and phase share the projections: one conv over a doubled batch.
    dist = _sorted_projection_distance(torch.cat([amp_x, phase_x]), torch.cat([amp_y, phase_y]), projections)  # (2B,)
    return dist[:b] + phase_weight * dist[b:]


@functools.cache
def _kernels(interpret: bool) -> types.SimpleNamespace:
    """The @triton.jit kernels, built on first use: triton reads TRITON_INTERPRET when `jit` decorates, and
    `import strsr.kernels.spectral_sw` must work without triton. Cached per mode, so both can live in one process."""
    global tl  # the interpreter re-executes kernel sources against this module's globals (closures are lost)
    import triton
    import triton.language as tl

    @triton.jit
    def _project_kernel(
        x_ptr, w_ptr, out_ptr,
        L, OW, NUM_PROJ, K,
        stride_xb, stride_xc, stride_xh, stride_xw, stride_xr,
        stride_wp, stride_wk,
        stride_ob, stride_oc, stride_op,
        KH: tl.constexpr, KW: tl.constexpr,
        BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
        ATAN_TERMS: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):  # fmt: skip
        """out[b, 0|1, k, l] = sum_{c,i,j} w[k, (c,i,j)] * (|x| | angle x)[b, c, oh+i, ow+j], l = oh * OW + ow."""
        tl.static_assert(BLOCK_L >= 16 and BLOCK_P >= 16 and BLOCK_K >= 16, "tl.dot tiles are at least 16 wide")
        pid_l, pid_p, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
        offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        mask_l, mask_p = offs_l < L, offs_p < NUM_PROJ
        oh, ow = offs_l // OW, offs_l % OW
        x_base = x_ptr + b * stride_xb
        acc_amp = tl.zeros((BLOCK_L, BLOCK_P), dtype=w_ptr.dtype.element_ty)  # fp32 (fp64 for complex128)
        acc_phase = tl.zeros((BLOCK_L, BLOCK_P), dtype=w_ptr.dtype.element_ty)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)  # flat (c, i, j) patch index, the filters' memory order
            mask_k = offs_k < K
            c, ij = offs_k // (KH * KW), offs_k % (KH * KW)
            i, j = ij // KW, ij % KW
            src = (x_base + c[None, :] * stride_xc + (oh[:, None] + i[None, :]) * stride_xh
                   + (ow[:, None] + j[None, :]) * stride_xw)  # (BLOCK_L, BLOCK_K) im2col gather  # fmt: skip
            mask = mask_l[:, None] & mask_k[None, :]
            re = tl.load(src, mask=mask, other=0.0)
            im = tl.load(src + stride_xr, mask=mask, other=0.0)
            # |z| and atan2(im, re) with C's signed-zero rules (atan2(+0, -0) = pi), like torch.abs / torch.angle.
            if re.dtype == tl.float64:
                neg_re, neg_im = re.to(tl.int64, bitcast=True) < 0, im.to(tl.int64, bitcast=True) < 0
            else:
                neg_re, neg_im = re.to(tl.int32, bitcast=True) < 0, im.to(tl.int32, bitcast=True) < 0
            ax, ay = tl.abs(re), tl.abs(im)
            big, small = tl.maximum(ax, ay), tl.minimum(ax, ay)
            a = small / tl.where(big > 0, big, 1.0)  # tan of the angle to the nearer axis, in [0, 1]
            amp = big * tl.sqrt(1.0 + a * a)  # hypot without overflow or underflow
            # atan(a) = pi/6 + atan((a sqrt3 - 1) / (a + sqrt3)) above tan(pi/12) leaves |t| <= 0.268, where the
            # odd Taylor series reaches fp32 (fp64) precision in 7 (14) terms.
            far = a > 0.2679491924311227
            t = tl.where(far, (a * 1.7320508075688772 - 1.0) / (a + 1.7320508075688772), a)
            t2 = t * t
            poly = tl.zeros_like(t2)
            for m in tl.static_range(ATAN_TERMS):  # Horner, highest term first: sum_n (-1)^n t^(2n) / (2n + 1)
                poly = poly * t2 + (1 - 2 * ((ATAN_TERMS - 1 - m) % 2)) / (2 * (ATAN_TERMS - 1 - m) + 1)
            phase = t * poly
            phase = tl.where(far, phase + 0.5235987755982988, phase)
            phase = tl.where(ay > ax, 1.5707963267948966 - phase, phase)
            phase = tl.where(neg_re, 3.141592653589793 - phase, phase)
            phase = tl.where(neg_im, -phase, phase)
            w = tl.load(w_ptr + offs_p[None, :] * stride_wp + offs_k[:, None] * stride_wk,
                        mask=mask_k[:, None] & mask_p[None, :], other=0.0)  # (BLOCK_K, BLOCK_P)  # fmt: skip
            acc_amp = tl.dot(amp, w, acc_amp, input_precision=DOT_PRECISION)
            acc_phase = tl.dot(phase, w, acc_phase, input_precision=DOT_PRECISION)
        out = out_ptr + b * stride_ob + offs_p[None, :] * stride_op + offs_l[:, None]
        mask = mask_l[:, None] & mask_p[None, :]
        tl.store(out, acc_amp, mask=mask)
        tl.store(out + stride_oc, acc_phase, mask=mask)

    @triton.jit
    def _sorted_distance_kernel(
        sx_ptr, ix_ptr, sy_ptr, iy_ptr, partial_ptr, sign_x_ptr, sign_y_ptr,
        L, NUM_PROJ, stride_sb, stride_sc, stride_sp,
        BLOCK_N: tl.constexpr, WRITE_SIGN_X: tl.constexpr, WRITE_SIGN_Y: tl.constexpr,
    ):  # fmt: skip
        """Per row (b, comp, k) of sorted values: partial sums of |sx - sy|; sign(sx - sy) scattered to the
        unsorted positions ix (and its negation to iy), in the sign tensors' dtype."""
        tl.static_assert(BLOCK_N >= 16, "reduction blocks are at least 16 wide")
        row, blk = tl.program_id(0).to(tl.int64), tl.program_id(1)
        offs = blk * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = offs < L
        sx = tl.load(sx_ptr + row * L + offs, mask=mask, other=0.0)
        sy = tl.load(sy_ptr + row * L + offs, mask=mask, other=0.0)
        diff = sx - sy
        tl.store(partial_ptr + row * tl.num_programs(1) + blk, tl.sum(tl.abs(diff), axis=0))
        if WRITE_SIGN_X or WRITE_SIGN_Y:
            sign = (diff > 0).to(tl.int8) - (diff < 0).to(tl.int8)  # torch's sgn: 0 where the values tie
            b, comp, k = row // (2 * NUM_PROJ), (row // NUM_PROJ) % 2, row % NUM_PROJ
            sign_row = b * stride_sb + comp * stride_sc + k * stride_sp
            if WRITE_SIGN_X:
                ix = tl.load(ix_ptr + row * L + offs, mask=mask, other=0)
                tl.store(sign_x_ptr + sign_row + ix, sign.to(sign_x_ptr.dtype.element_ty), mask=mask)
            if WRITE_SIGN_Y:
                iy = tl.load(iy_ptr + row * L + offs, mask=mask, other=0)
                tl.store(sign_y_ptr + sign_row + iy, (-sign).to(sign_y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _project_transpose_kernel(
        x_ptr, sign_ptr, w_ptr, scale_ptr, grad_ptr,
        C, W, HW, OH, OW, K,
        stride_xb, stride_xc, stride_xh, stride_xw, stride_xr,
        stride_sb, stride_sc, stride_sp,
        stride_wk,
        stride_gb, stride_gc, stride_gh, stride_gw, stride_gr,
        KH: tl.constexpr, KW: tl.constexpr,
        BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
        MIN_PHASE_R: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):  # fmt: skip
        """grad[b, c, h, w] = Jacobian^T (scale * sum_{k,i,j} sign[b, 0|1, k, (h-i, w-j)] * w[(k,i,j), c])."""
        tl.static_assert(BLOCK_S >= 16 and BLOCK_C >= 16 and BLOCK_K >= 16, "tl.dot tiles are at least 16 wide")
        pid_s, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
        offs_s = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
        offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        mask_s, mask_c = offs_s < HW, offs_c < C
        h, w = offs_s // W, offs_s % W
        sign_base = sign_ptr + b * stride_sb
        acc_amp = tl.zeros((BLOCK_S, BLOCK_C), dtype=w_ptr.dtype.element_ty)
        acc_phase = tl.zeros((BLOCK_S, BLOCK_C), dtype=w_ptr.dtype.element_ty)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)  # flat (k, i, j): projection k, filter tap (i, j)
            mask_k = offs_k < K
            p, ij = offs_k // (KH * KW), offs_k % (KH * KW)
            oh, ow = h[:, None] - (ij // KW)[None, :], w[:, None] - (ij % KW)[None, :]  # (BLOCK_S, BLOCK_K)
            valid = mask_s[:, None] & mask_k[None, :] & (oh >= 0) & (oh < OH) & (ow >= 0) & (ow < OW)
            src = sign_base + p[None, :] * stride_sp + oh * OW + ow
            g_amp = tl.load(src, mask=valid, other=0).to(w_ptr.dtype.element_ty)  # +-1 and 0: exact in any dot
            g_phase = tl.load(src + stride_sc, mask=valid, other=0).to(w_ptr.dtype.element_ty)
            wt = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_c[None, :],
                         mask=mask_k[:, None] & mask_c[None, :], other=0.0)  # (BLOCK_K, BLOCK_C)  # fmt: skip
            acc_amp = tl.dot(g_amp, wt, acc_amp, input_precision=DOT_PRECISION)
            acc_phase = tl.dot(g_phase, wt, acc_phase, input_precision=DOT_PRECISION)
        acc_amp = acc_amp * tl.load(scale_ptr + 2 * b)
        acc_phase = acc_phase * tl.load(scale_ptr + 2 * b + 1)
        mask = mask_s[:, None] & mask_c[None, :]
        src = x_ptr + b * stride_xb + offs_c[None, :] * stride_xc + h[:, None] * stride_xh + w[:, None] * stride_xw
        re = tl.load(src, mask=mask, other=0.0)
        im = tl.load(src + stride_xr, mask=mask, other=0.0)
        # Jacobians of AmplitudePhaseFunction: d|z| = (re, im) / |z|, d angle = (-im, re) / |z|^2, computed from
        # the unit vector so that subnormal z stay bounded; the phase term is 0 where |z| <= sqrt(finfo.tiny).
        big = tl.maximum(tl.abs(re), tl.abs(im))
        u_re, u_im = re / tl.where(big > 0, big, 1.0), im / tl.where(big > 0, big, 1.0)  # one of them is +-1
        norm = tl.where(big > 0, tl.sqrt(u_re * u_re + u_im * u_im), 1.0)  # |z| / big, in [1, sqrt 2]
        unit_re, unit_im = u_re / norm, u_im / norm
        r = big * norm
        phase_scale = tl.where(r > MIN_PHASE_R, acc_phase / tl.where(r > MIN_PHASE_R, r, 1.0), 0.0)  # g_phase / |z|
        grad_re = acc_amp * unit_re - phase_scale * unit_im
        grad_im = acc_amp * unit_im + phase_scale * unit_re
        dst = (grad_ptr + b * stride_gb + offs_c[None, :] * stride_gc + h[:, None] * stride_gh
               + w[:, None] * stride_gw)  # fmt: skip
        tl.store(dst, grad_re, mask=mask)
        tl.store(dst + stride_gr, grad_im, mask=mask)

    return types.SimpleNamespace(
        project=_project_kernel, sorted_distance=_sorted_distance_kernel, project_transpose=_project_transpose_kernel
    )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2_block(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, n - 1).bit_length()))


def _dot_precision(dtype: torch.dtype) -> str:
    # The reference's conv2d runs in TF32 on CUDA exactly when cudnn.allow_tf32 is set (torch's default: on).
    return "tf32" if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee"


def _check_triton_inputs(spec_x: torch.Tensor, spec_y: torch.Tensor, projections: torch.Tensor) -> None:
    _check_inputs(spec_x, spec_y, projections)
    if spec_x.dtype not in (torch.complex64, torch.complex128) or spec_y.dtype != spec_x.dtype:
        raise TypeError(f"the Triton kernel takes complex64 or complex128 spectra, got {spec_x.dtype}, {spec_y.dtype}")
    if projections.dtype != spec_x.real.dtype:
        raise TypeError(f"projections must be {spec_x.real.dtype} like the spectra's parts, got {projections.dtype}")
    if not (spec_x.device == spec_y.device == projections.device):
        raise ValueError(f"spectra and projections on different devices: {spec_x.device}, {spec_y.device}, "
                         f"{projections.device}")  # fmt: skip
    (num_proj, c, kh, kw), (h, w) = projections.shape, spec_x.shape[-2:]
    if h < kh or w < kw:
        raise ValueError(f"spectra {tuple(spec_x.shape)} are smaller than the {kh}x{kw} projections")
    if max(2 * c * h * w, 2 * num_proj * (h - kh + 1) * (w - kw + 1)) >= 2**31:  # in-sample offsets are int32
        raise ValueError(f"spectra {tuple(spec_x.shape)} with {num_proj} projections exceed 2^31 values per sample")


# Tiles: fp32 64 positions x up to 128 projections x 32 patch entries on 8 warps, and 64 x 64 x 32 for the transpose,
# compile for sm_80 and sm_90 without register spills (ptxas -v; at most 80 KiB / 26 KiB of shared memory, whatever
# C is, since C only lengthens the K loop); fp64 spills at those sizes and gets 32 x 32 tiles on 4 warps.
def _project(spec: torch.Tensor, w_flat: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """(|spec|, angle spec) projected by the (P, C * kh * kw) filters: (B, C, H, W) complex -> (B, 2, P, L) real."""
    b, c, h, w = spec.shape
    num_proj, k = w_flat.shape
    ow, num_pos = w - kw + 1, (h - kh + 1) * (w - kw + 1)
    x = torch.view_as_real(spec.resolve_conj())  # (B, C, H, W, 2)
    out = torch.empty((b, 2, num_proj, num_pos), dtype=w_flat.dtype, device=spec.device)
    fp64 = w_flat.dtype == torch.float64
    block_l, block_p = _pow2_block(num_pos, 16, 32 if fp64 else 64), _pow2_block(num_proj, 16, 32 if fp64 else 128)
    grid = (_cdiv(num_pos, block_l), _cdiv(num_proj, block_p), b)
    _kernels(interpreting()).project[grid](
        x, w_flat, out, num_pos, ow, num_proj, k, *x.stride(), *w_flat.stride(), *out.stride()[:3],
        KH=kh, KW=kw, BLOCK_L=block_l, BLOCK_P=block_p, BLOCK_K=32,
        ATAN_TERMS=14 if fp64 else 7, DOT_PRECISION=_dot_precision(w_flat.dtype), num_warps=4 if fp64 else 8,
    )  # fmt: skip
    return out


def _sorted_distance(
    sorted_x: torch.Tensor, perm_x: torch.Tensor | None, sorted_y: torch.Tensor, perm_y: torch.Tensor | None,
    sign_x: torch.Tensor | None, sign_y: torch.Tensor | None,
) -> torch.Tensor:  # fmt: skip
    """Sum over L of |sorted_x - sorted_y| per (b, comp): (B, 2, P, L) sorted rows -> (B, 2); scatters the signs."""
    b, _, num_proj, num_pos = sorted_x.shape
    if not (sorted_x.is_contiguous() and sorted_y.is_contiguous()):
        raise ValueError("sorted rows must be contiguous")
    block = _pow2_block(num_pos, 16, 1024)
    num_blocks = _cdiv(num_pos, block)
    partial = torch.empty((b * 2 * num_proj, num_blocks), dtype=sorted_x.dtype, device=sorted_x.device)
    signs = sign_x if sign_x is not None else sign_y
    strides = signs.stride()[:3] if signs is not None else (0, 0, 0)
    _kernels(interpreting()).sorted_distance[(b * 2 * num_proj, num_blocks)](
        sorted_x, perm_x if sign_x is not None else sorted_x, sorted_y, perm_y if sign_y is not None else sorted_y,
        partial, sign_x if sign_x is not None else partial, sign_y if sign_y is not None else partial,
        num_pos, num_proj, *strides,
        BLOCK_N=block, WRITE_SIGN_X=sign_x is not None, WRITE_SIGN_Y=sign_y is not None, num_warps=4,
    )  # fmt: skip
    return partial.view(b, 2, -1).sum(dim=-1)


def _project_transpose(spec: torch.Tensor, signs: torch.Tensor, w_t: torch.Tensor, scale: torch.Tensor, kh: int,
                       kw: int) -> torch.Tensor:  # fmt: skip
    """Gradient w.r.t. the complex spec of scale[b, comp] * sum(signs * projections of (|spec|, angle spec))."""
    b, c, h, w = spec.shape
    oh, ow = h - kh + 1, w - kw + 1
    x = torch.view_as_real(spec.resolve_conj())
    grad = torch.empty_like(x, memory_format=torch.contiguous_format)  # (B, C, H, W, 2)
    if signs.stride(-1) != 1 or not w_t.is_contiguous() or not scale.is_contiguous():
        raise ValueError("signs rows, transposed filters and scales must be contiguous")
    fp64 = w_t.dtype == torch.float64
    block_s, block_c = _pow2_block(h * w, 16, 32 if fp64 else 64), _pow2_block(c, 16, 32 if fp64 else 64)
    grid = (_cdiv(h * w, block_s), _cdiv(c, block_c), b)
    _kernels(interpreting()).project_transpose[grid](
        x, signs, w_t, scale, grad, c, w, h * w, oh, ow, w_t.shape[0],
        *x.stride(), *signs.stride()[:3], w_t.stride(0), *grad.stride(),
        KH=kh, KW=kw, BLOCK_S=block_s, BLOCK_C=block_c, BLOCK_K=32,
        MIN_PHASE_R=torch.finfo(w_t.dtype).tiny ** 0.5, DOT_PRECISION=_dot_precision(w_t.dtype),
        num_warps=4 if fp64 else 8,
    )  # fmt: skip
    return torch.view_as_complex(grad)


def _forward(spec_x, spec_y, projections, phase_weight, grad_x: bool, grad_y: bool):
    """Scores (B,) and the int8 signs (B, 2, P, L) the backward of x (and y) needs, chunk by chunk of projections."""
    b = spec_x.shape[0]
    num_proj, c, kh, kw = projections.shape
    num_pos = (spec_x.shape[-2] - kh + 1) * (spec_x.shape[-1] - kw + 1)
    w_flat = projections.reshape(num_proj, c * kh * kw).contiguous()  # (P, C * kh * kw), the (c, i, j) order
    sign_shape, sign_dtype = (b, 2, num_proj, num_pos), _SIGN_DTYPES[projections.dtype]
    sign_x = torch.empty(sign_shape, dtype=sign_dtype, device=spec_x.device) if grad_x else None
    sign_y = torch.empty(sign_shape, dtype=sign_dtype, device=spec_x.device) if grad_y else None
    totals = torch.zeros((b, 2), dtype=projections.dtype, device=spec_x.device)
    chunk = max(1, min(num_proj, _CHUNK_ELEMENTS // (2 * b * num_pos)))
    for p0 in range(0, num_proj, chunk):
        p1 = min(num_proj, p0 + chunk)
        sorted_y, perm_y = torch.sort(_project(spec_y, w_flat[p0:p1], kh, kw), dim=-1)  # (B, 2, chunk, L)
        perm_y = perm_y if grad_y else None
        sorted_x, perm_x = torch.sort(_project(spec_x, w_flat[p0:p1], kh, kw), dim=-1)
        perm_x = perm_x if grad_x else None
        totals += _sorted_distance(sorted_x, perm_x, sorted_y, perm_y, None if sign_x is None else sign_x[:, :, p0:p1],
                                   None if sign_y is None else sign_y[:, :, p0:p1])  # fmt: skip
        del sorted_x, perm_x, sorted_y, perm_y
    dist = totals / (num_proj * num_pos)  # (B, 2): amplitude, phase
    return dist[:, 0] + phase_weight * dist[:, 1], sign_x, sign_y


class SpectralSlicedWassersteinFunction(torch.autograd.Function):
    """Triton forward/backward of `spectral_sliced_wasserstein_ref`; gradients to the spectra, not the filters."""

    @staticmethod
    def forward(ctx, spec_x, spec_y, projections, phase_weight: float):
        if ctx.needs_input_grad[2]:
            raise NotImplementedError("the Triton spectral SW has no gradient for the projections; "
                                      "use backend='reference' or detach them")  # fmt: skip
        grad_x, grad_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        out, sign_x, sign_y = _forward(spec_x, spec_y, projections, phase_weight, grad_x, grad_y)
        ctx.save_for_backward(spec_x if grad_x else None, spec_y if grad_y else None, projections, sign_x, sign_y)
        ctx.phase_weight = phase_weight
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        spec_x, spec_y, projections, sign_x, sign_y = ctx.saved_tensors
        num_proj, c, kh, kw = projections.shape
        num_pos = sign_x.shape[-1] if sign_x is not None else sign_y.shape[-1]
        w_t = projections.permute(0, 2, 3, 1).reshape(num_proj * kh * kw, c).contiguous()  # ((k, i, j), C)
        weights = torch.tensor([1.0, ctx.phase_weight], dtype=projections.dtype, device=projections.device)
        scale = (grad_out.to(projections.dtype)[:, None] * weights / (num_proj * num_pos)).contiguous()  # (B, 2)
        grad_x = None if spec_x is None else _project_transpose(spec_x, sign_x, w_t, scale, kh, kw)
        grad_y = None if spec_y is None else _project_transpose(spec_y, sign_y, w_t, scale, kh, kw)
        return grad_x, grad_y, None, None


def spectral_sliced_wasserstein(
    spec_x: torch.Tensor,
    spec_y: torch.Tensor,
    projections: torch.Tensor,
    phase_weight: float = 1.0,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """`spectral_sliced_wasserstein_ref` on the backend `strsr.kernels.dispatch.resolve_backend` picks; (B,).

    The Triton path takes complex64/complex128 spectra (B, C, H, W) with H, W >= the filter size, projections
    (P, C, kh, kw) of the matching real dtype on the same device, and differentiates both spectra (not the filters).
    """
    if resolve_backend(backend, spec_x) == "reference":
        return spectral_sliced_wasserstein_ref(spec_x, spec_y, projections, phase_weight)
    _check_triton_inputs(spec_x, spec_y, projections)
    return SpectralSlicedWassersteinFunction.apply(spec_x, spec_y, projections, float(phase_weight))
