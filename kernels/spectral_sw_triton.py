# Triton kernels and launchers of `strsr.kernels.spectral_sw` (the header, reference, autograd and public op live
# there). Importing this module needs triton; `strsr.kernels.spectral_sw` imports it on first use.
#
# Forward, per layer: (1) `_amp_phase_kernel`: |z| and angle z of each spectrum once, into one (2B, C, H, W) map
# (amplitudes of the batch, then phases); (2) the projections by the vendor convolution (F.conv2d: cuDNN on CUDA,
# TF32 exactly when torch.backends.cudnn.allow_tf32 is set, as in the reference), chunked over projections so that
# the (2B, P_chunk, L) outputs stay bounded; (3) one sort per chunk of rows of both components, samples and
# projections together: fp32 values become packed int64 keys (row, order-preserving value bits, position;
# `_pack_keys_kernel`), all distinct, so `torch.unique(sorted=True)` sorts them as plain keys (cub's radix_sort_keys
# on CUDA) with no index payload and no per-row host loop (torch.sort(dim=-1) launches one radix sort per row once
# rows reach 1M values, and always carries int64 indices); fp64 values do not fit a key beside row and position and
# take torch.sort(dim=-1); (4) `_sorted_distance_kernel`: the per-block sums of |sorted_x - sorted_y| and, where a
# gradient is needed, sign(sorted_x - sorted_y) scattered to each value's unsorted position as int8 -- the only
# tensor the backward keeps besides the input spectra.
# Backward: the transposed convolution of those signs with the filters (torch.nn.grad.conv2d_input, the vendor
# kernel again), chunked the same way, then `_amp_phase_backward_kernel` applies grad_out * {1, phase_weight} / (P L)
# and the amplitude/phase Jacobians of `AmplitudePhaseFunction` and writes d/d(re, im) into the complex gradient.
# None of these kernels does a tl.dot, so fp32 and fp64 compile alike on every target (Triton 3.6's fp64 dot
# needed an out_dtype the earlier implicit-GEMM kernels lacked).

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

CONV_CHUNK_ELEMENTS = 1 << 26  # projected values per side per convolution call (256 MiB of fp32 each)
SORT_CHUNK_ELEMENTS = 1 << 23  # values per packed sort: keys, sorted keys, cub's buffers ~ 32 B each (256 MiB)
BLOCK = 1024  # elements per program of the elementwise kernels and the distance reduction
NUM_WARPS = 4

# ----------------------------------------------------------------------------- kernels


@triton.jit
def _amp_phase(re, im, ATAN_TERMS: tl.constexpr):
    """(|z|, atan2(im, re)) with C's signed-zero rules (atan2(+0, -0) = pi), like torch.abs / torch.angle; hypot
    without overflow or underflow; atan by octant reduction and an odd series (libdevice's atan2 does not run in
    the interpreter)."""
    if re.dtype == tl.float64:
        neg_re, neg_im = re.to(tl.int64, bitcast=True) < 0, im.to(tl.int64, bitcast=True) < 0
    else:
        neg_re, neg_im = re.to(tl.int32, bitcast=True) < 0, im.to(tl.int32, bitcast=True) < 0
    ax, ay = tl.abs(re), tl.abs(im)
    big, small = tl.maximum(ax, ay), tl.minimum(ax, ay)
    a = small / tl.where(big > 0, big, 1.0)  # tan of the angle to the nearer axis, in [0, 1]
    amp = big * tl.sqrt(1.0 + a * a)
    # atan(a) = pi/6 + atan((a sqrt3 - 1) / (a + sqrt3)) above tan(pi/12) leaves |t| <= 0.268, where the odd Taylor
    # series reaches fp32 (fp64) precision in 7 (14) terms.
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
    return amp, phase


@triton.jit
def _amp_phase_kernel(
    x_ptr, out_ptr, numel, C, H, W, stride_xb, stride_xc, stride_xh, stride_xw, stride_xr,
    ATAN_TERMS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """out[0 | 1, b, c, h, w] = |x|, angle x for complex x given as (B, C, H, W, 2) real parts; out contiguous."""
    tl.static_assert(BLOCK % 128 == 0, "whole warps of elements")
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    w, rest = offs % W, offs // W
    h, rest = rest % H, rest // H
    c, b = rest % C, rest // C
    src = x_ptr + b * stride_xb + c * stride_xc + h * stride_xh + w * stride_xw
    re = tl.load(src, mask=mask, other=0.0)
    im = tl.load(src + stride_xr, mask=mask, other=0.0)
    amp, phase = _amp_phase(re, im, ATAN_TERMS)
    tl.store(out_ptr + offs, amp, mask=mask)
    tl.store(out_ptr + numel + offs, phase, mask=mask)


@triton.jit
def _pack_keys_kernel(v_ptr, key_ptr, L, pos_bits, BLOCK: tl.constexpr):
    """key[r, l] = r << (32 + pos_bits) | order-preserving bits of fp32 v[r, l] << pos_bits | l, for rows (R, L).

    Sorting the keys sorts each row's values and keeps rows apart; the caller keeps r < 2^(31 - pos_bits)."""
    tl.static_assert(BLOCK % 128 == 0, "whole warps of elements")
    row, blk = tl.program_id(0).to(tl.int64), tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < L
    bits = tl.load(v_ptr + row * L + offs, mask=mask, other=0.0).to(tl.int32, bitcast=True)
    ordered = bits ^ ((bits >> 31) | -2147483648)  # negative: all bits flipped; positive: the sign bit set
    key = (row << (32 + pos_bits)) | (ordered.to(tl.uint32, bitcast=True).to(tl.int64) << pos_bits) | offs
    tl.store(key_ptr + row * L + offs, key, mask=mask)


@triton.jit
def _sorted_distance_kernel(
    sx_ptr, ix_ptr, sy_ptr, iy_ptr, partial_ptr, sign_x_ptr, sign_y_ptr,
    L, pos_bits, row_start, rows_per_sample, num_proj, proj_start,
    PACKED: tl.constexpr, WRITE_SIGN_X: tl.constexpr, WRITE_SIGN_Y: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """One block of one sorted row: partial[row, blk] = sum |sx - sy|; sign(sx - sy) scattered to the unsorted
    positions (-sign for y) of sign[(comp, b), proj_start + p, :].

    Rows are (comp, b, p) of a chunk of `rows_per_sample` projections, this launch's from `row_start`. PACKED: sx/sy
    are `_pack_keys_kernel` keys, sorted (values and positions decoded from them); else sorted values with their
    int64 sort permutations ix/iy."""
    tl.static_assert(BLOCK % 128 == 0, "whole warps of elements")
    local, blk = tl.program_id(0).to(tl.int64), tl.program_id(1)
    row = row_start + local
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < L
    if PACKED:
        kx = tl.load(sx_ptr + local * L + offs, mask=mask, other=0)
        ky = tl.load(sy_ptr + local * L + offs, mask=mask, other=0)
        ox, oy = (kx >> pos_bits).to(tl.int32), (ky >> pos_bits).to(tl.int32)  # truncation keeps the value bits
        sx = (ox ^ (~(ox >> 31) | -2147483648)).to(tl.float32, bitcast=True)
        sy = (oy ^ (~(oy >> 31) | -2147483648)).to(tl.float32, bitcast=True)
        px, py = kx - ((kx >> pos_bits) << pos_bits), ky - ((ky >> pos_bits) << pos_bits)
    else:
        sx = tl.load(sx_ptr + local * L + offs, mask=mask, other=0.0)
        sy = tl.load(sy_ptr + local * L + offs, mask=mask, other=0.0)
        px = tl.load(ix_ptr + local * L + offs, mask=mask, other=0)
        py = tl.load(iy_ptr + local * L + offs, mask=mask, other=0)
    diff = tl.where(mask, sx - sy, 0.0)
    tl.store(partial_ptr + row * tl.num_programs(1) + blk, tl.sum(tl.abs(diff), axis=0))
    if WRITE_SIGN_X or WRITE_SIGN_Y:
        sign = (diff > 0).to(tl.int8) - (diff < 0).to(tl.int8)  # torch's sgn: 0 where the values tie
        sign_row = (row // rows_per_sample) * num_proj + proj_start + row % rows_per_sample
        if WRITE_SIGN_X:
            tl.store(sign_x_ptr + sign_row * L + px, sign, mask=mask)
        if WRITE_SIGN_Y:
            tl.store(sign_y_ptr + sign_row * L + py, -sign, mask=mask)


@triton.jit
def _amp_phase_backward_kernel(
    x_ptr, g_ptr, scale_ptr, grad_ptr, numel, C, H, W, stride_xb, stride_xc, stride_xh, stride_xw, stride_xr,
    MIN_PHASE_R: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """grad = Jacobian^T of (|x|, angle x) applied to (scale[b, 0] g[0, b], scale[b, 1] g[1, b]); grad (B, C, H, W, 2)
    contiguous, g (2, B, C, H, W) contiguous, scale (B, 2)."""
    tl.static_assert(BLOCK % 128 == 0, "whole warps of elements")
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    w, rest = offs % W, offs // W
    h, rest = rest % H, rest // H
    c, b = rest % C, rest // C
    g_amp = tl.load(g_ptr + offs, mask=mask, other=0.0) * tl.load(scale_ptr + 2 * b, mask=mask, other=0.0)
    g_phase = tl.load(g_ptr + numel + offs, mask=mask, other=0.0) * tl.load(scale_ptr + 2 * b + 1, mask=mask,
                                                                            other=0.0)  # fmt: skip
    src = x_ptr + b * stride_xb + c * stride_xc + h * stride_xh + w * stride_xw
    re = tl.load(src, mask=mask, other=0.0)
    im = tl.load(src + stride_xr, mask=mask, other=0.0)
    # d|z| = (re, im) / |z|, d angle = (-im, re) / |z|^2, from the unit vector so that subnormal z stay bounded;
    # the phase term is 0 where |z| <= sqrt(finfo.tiny), as in AmplitudePhaseFunction.
    big = tl.maximum(tl.abs(re), tl.abs(im))
    u_re, u_im = re / tl.where(big > 0, big, 1.0), im / tl.where(big > 0, big, 1.0)  # one of them is +-1
    norm = tl.where(big > 0, tl.sqrt(u_re * u_re + u_im * u_im), 1.0)  # |z| / big, in [1, sqrt 2]
    unit_re, unit_im = u_re / norm, u_im / norm
    r = big * norm
    phase_scale = tl.where(r > MIN_PHASE_R, g_phase / tl.where(r > MIN_PHASE_R, r, 1.0), 0.0)  # g_phase / |z|
    tl.store(grad_ptr + 2 * offs, g_amp * unit_re - phase_scale * unit_im, mask=mask)
    tl.store(grad_ptr + 2 * offs + 1, g_amp * unit_im + phase_scale * unit_re, mask=mask)


# ----------------------------------------------------------------------------- launchers


def amplitude_phase(spec: torch.Tensor) -> torch.Tensor:
    """(2B, C, H, W) real: |spec| for the B samples, then angle spec; complex (B, C, H, W) in."""
    x = torch.view_as_real(spec.resolve_conj())  # (B, C, H, W, 2)
    b, c, h, w = spec.shape
    out = torch.empty((2 * b, c, h, w), dtype=x.dtype, device=x.device)
    numel = b * c * h * w
    _amp_phase_kernel[(triton.cdiv(numel, BLOCK),)](
        x, out, numel, c, h, w, *x.stride(), ATAN_TERMS=14 if x.dtype == torch.float64 else 7, BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )  # fmt: skip
    return out


def pos_bits(num_pos: int) -> int:
    return max(1, (num_pos - 1).bit_length())


def rows_per_sort(num_pos: int) -> int:
    """Rows of `num_pos` values one packed sort takes: what the key's row field holds and the memory budget allows."""
    return max(1, min(1 << (31 - pos_bits(num_pos)), SORT_CHUNK_ELEMENTS // num_pos))


def sort_packed(rows: torch.Tensor) -> torch.Tensor:
    """Sorted `_pack_keys_kernel` keys of fp32 rows (R, L) contiguous, R <= rows_per_sort(L): (R, L) int64."""
    r, num_pos = rows.shape
    keys = torch.empty((r, num_pos), dtype=torch.int64, device=rows.device)
    _pack_keys_kernel[(r, triton.cdiv(num_pos, BLOCK))](rows, keys, num_pos, pos_bits(num_pos), BLOCK=BLOCK,
                                                        num_warps=NUM_WARPS)  # fmt: skip
    # Every key holds its own row and position, so none repeats and unique() is a plain keys-only sort.
    ordered = torch.unique(keys.view(-1), sorted=True)
    if ordered.numel() != keys.numel():
        raise RuntimeError("packed sort keys collided; rows or positions overflow their bit fields")
    return ordered.view(r, num_pos)


def _chunk_projections(batch: int, num_proj: int, num_pos: int) -> int:
    return max(1, min(num_proj, CONV_CHUNK_ELEMENTS // (2 * batch * num_pos)))


def forward(spec_x, spec_y, projections, phase_weight: float, grad_x: bool, grad_y: bool):
    """Scores (B,) and the int8 signs (2B, P, L) the backward of x (and y) needs; see the header."""
    b, _, h, w = spec_x.shape
    num_proj, _, kh, kw = projections.shape
    num_pos = (h - kh + 1) * (w - kw + 1)
    packed = projections.dtype == torch.float32
    ap_x, ap_y = amplitude_phase(spec_x), amplitude_phase(spec_y)  # (2B, C, H, W)
    signs = [torch.empty((2 * b, num_proj, num_pos), dtype=torch.int8, device=spec_x.device) if need else None
             for need in (grad_x, grad_y)]  # fmt: skip
    totals = torch.zeros(2 * b, dtype=projections.dtype, device=spec_x.device)
    chunk, num_blocks = _chunk_projections(b, num_proj, num_pos), triton.cdiv(num_pos, BLOCK)
    step = rows_per_sort(num_pos) if packed else max(1, SORT_CHUNK_ELEMENTS // num_pos)
    for p0 in range(0, num_proj, chunk):
        filters = projections[p0 : p0 + chunk]
        proj_x = F.conv2d(ap_x, filters).view(-1, num_pos)  # (2B * P_chunk, L): rows (comp, b, p)
        proj_y = F.conv2d(ap_y, filters).view(-1, num_pos)
        partial = torch.empty((proj_x.shape[0], num_blocks), dtype=projections.dtype, device=spec_x.device)
        for r0 in range(0, proj_x.shape[0], step):
            rows_x, rows_y = proj_x[r0 : r0 + step], proj_y[r0 : r0 + step]
            if packed:
                sx, sy, ix, iy = sort_packed(rows_x), sort_packed(rows_y), None, None
            else:
                (sx, ix), (sy, iy) = torch.sort(rows_x, dim=-1), torch.sort(rows_y, dim=-1)
            _sorted_distance_kernel[(rows_x.shape[0], num_blocks)](
                sx, sx if ix is None else ix, sy, sy if iy is None else iy, partial,
                *(partial if s is None else s for s in signs),
                num_pos, pos_bits(num_pos), r0, filters.shape[0], num_proj, p0,
                PACKED=packed, WRITE_SIGN_X=grad_x, WRITE_SIGN_Y=grad_y, BLOCK=BLOCK, num_warps=NUM_WARPS,
            )  # fmt: skip
            del sx, sy, ix, iy
        totals += partial.view(2 * b, -1).sum(dim=1)
        del proj_x, proj_y
    dist = totals / (num_proj * num_pos)  # (2B,): amplitudes, then phases
    return dist[:b] + phase_weight * dist[b:], signs[0], signs[1]


def backward(spec: torch.Tensor, signs: torch.Tensor, projections: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Complex gradient of sum_b scale[b, comp] * sum(signs * projections of (|spec|, angle spec)); scale (B, 2)."""
    b, c, h, w = spec.shape
    num_proj, _, kh, kw = projections.shape
    oh, ow = h - kh + 1, w - kw + 1
    chunk = _chunk_projections(b, num_proj, oh * ow)
    grad_ap = None  # d/d(|spec|, angle spec) before the scale: (2B, C, H, W)
    for p0 in range(0, num_proj, chunk):
        filters = projections[p0 : p0 + chunk]
        g = signs[:, p0 : p0 + chunk].to(projections.dtype).view(2 * b, filters.shape[0], oh, ow)
        part = torch.nn.grad.conv2d_input((2 * b, c, h, w), filters, g)  # the transposed convolution
        grad_ap = part if grad_ap is None else grad_ap.add_(part)
    x = torch.view_as_real(spec.resolve_conj())
    grad = torch.empty((b, c, h, w, 2), dtype=x.dtype, device=x.device)
    numel = b * c * h * w
    _amp_phase_backward_kernel[(triton.cdiv(numel, BLOCK),)](
        x, grad_ap.contiguous(), scale.contiguous(), grad, numel, c, h, w, *x.stride(),
        MIN_PHASE_R=torch.finfo(x.dtype).tiny ** 0.5, BLOCK=BLOCK, num_warps=NUM_WARPS,
    )  # fmt: skip
    return torch.view_as_complex(grad)


# ----------------------------------------------------------------------------- what the CPU guard compiles


def compile_cases(arch: int):
    """(label, kernel, args, kwargs, spill bound 0) of every kernel as `forward`/`backward` launch it, for relu1_2's
    spectra of a 512^2 input (1, 64, 512, 512), 256 projections of 5x5, fp32 and fp64, on meta tensors. The launch
    configuration is one per kernel on every architecture (elementwise and row kernels: `arch` changes only the
    target)."""
    b, c, h, w, num_proj = 1, 64, 512, 512, 256
    num_pos = (h - 4) * (w - 4)
    numel = b * c * h * w
    for dtype in (torch.float32, torch.float64):
        name = "fp32" if dtype == torch.float32 else "fp64"
        x = torch.empty((b, c, h, w, 2), dtype=dtype, device="meta")
        ap = torch.empty((2 * b, c, h, w), dtype=dtype, device="meta")
        rows = torch.empty((2 * b * num_proj, num_pos), dtype=dtype, device="meta")
        partial = torch.empty((rows.shape[0], triton.cdiv(num_pos, BLOCK)), dtype=dtype, device="meta")
        signs = torch.empty((2 * b, num_proj, num_pos), dtype=torch.int8, device="meta")
        perm = torch.empty(rows.shape, dtype=torch.int64, device="meta")
        scale = torch.empty((b, 2), dtype=dtype, device="meta")
        atan_terms = 14 if dtype == torch.float64 else 7
        common = dict(BLOCK=BLOCK, num_warps=NUM_WARPS)
        yield (f"amp_phase {name}", _amp_phase_kernel, (x, ap, numel, c, h, w, *x.stride()),
               dict(ATAN_TERMS=atan_terms, **common), 0)  # fmt: skip
        packed = dtype == torch.float32
        sorted_rows = perm if packed else rows
        yield (f"sorted_distance {name}", _sorted_distance_kernel,
               (sorted_rows, perm, sorted_rows, perm, partial, signs, signs, num_pos, pos_bits(num_pos), 0, num_proj,
                num_proj, 0), dict(PACKED=packed, WRITE_SIGN_X=True, WRITE_SIGN_Y=True, **common), 0)  # fmt: skip
        yield (f"amp_phase_backward {name}", _amp_phase_backward_kernel,
               (x, ap, scale, x, numel, c, h, w, *x.stride()),
               dict(MIN_PHASE_R=torch.finfo(dtype).tiny ** 0.5, **common), 0)  # fmt: skip
        if packed:
            yield (f"pack_keys {name}", _pack_keys_kernel, (rows, perm, num_pos, pos_bits(num_pos)), common, 0)
