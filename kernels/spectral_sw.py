# Spectral sliced-Wasserstein distance of one FDL layer, fused in Triton, beside its PyTorch reference.
#
# Algorithm (Ni et al., "Misalignment-Robust Frequency Distribution Loss for Image Transformation", CVPR 2024;
# github.com/eezkni/FDL): for complex spectra X, Y of shape (B, C, H, W) and P unit filters w_k of shape (C, kh, kw),
#     score[b] = SW(|X|, |Y|) + phase_weight * SW(angle X, angle Y)
#     SW(a, b) = mean_{k, n} | sort_n(conv2d(a, w_k))[n] - sort_n(conv2d(b, w_k))[n] |     (valid conv, stride 1)
# i.e. per sample, component and projection, the 1-D Wasserstein-1 distance between the L = (H-kh+1)(W-kw+1)
# projected values of x and of y, averaged over the P slices.
#
# Reference (`spectral_sliced_wasserstein_ref`, the CPU path): the official FDL's structure, amplitude and phase in
# separate calls, so that only one component's projections, sorted values and indices are alive at a time (one
# concatenated call held both: 27% over the official FDL's peak at 256^2 and 384^2).
# Triton path (`strsr.kernels.spectral_sw_triton`, its header has the details): amplitude and phase once per
# spectrum in one kernel, the projections by the vendor convolution, one packed-key sort per chunk of rows (no
# int64 index payload, no per-row host loop), and a fused kernel for the distance sums and the gradient signs,
# which are scattered to the unsorted positions as int8: besides its inputs, that is all the backward keeps (1 byte
# per projected value; autograd through the reference keeps int64 indices, the |.| inputs and the maps). The
# backward is the vendor transposed convolution of the signs plus a kernel for the amplitude/phase Jacobians.
#
# Limits: float32/float64 spectra (complex64/complex128); no gradient to the projections; no double backward. The
# projections' precision is the convolution's: TF32 on CUDA exactly when torch.backends.cudnn.allow_tf32 is set,
# as in the reference. Layout of this op (STYLE.md): this file holds the reference, the autograd Function and the
# public op; the kernels and launchers, which need triton, are imported on first use.

from __future__ import annotations

import torch
import torch.nn.functional as F

from strsr.kernels.dispatch import resolve_kernel_backend


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
    pb = torch.sort(F.conv2d(b, proj).flatten(2), dim=-1).values  # (N, P, L); a target's indices are dropped here
    pa = torch.sort(F.conv2d(a, proj).flatten(2), dim=-1).values
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
    amp_x, phase_x = AmplitudePhaseFunction.apply(spec_x)
    amp_y, phase_y = AmplitudePhaseFunction.apply(spec_y)
    amplitude = _sorted_projection_distance(amp_x, amp_y, projections)
    return amplitude + phase_weight * _sorted_projection_distance(phase_x, phase_y, projections)


def _check_triton_inputs(spec_x: torch.Tensor, spec_y: torch.Tensor, projections: torch.Tensor) -> None:
    _check_inputs(spec_x, spec_y, projections)
    if spec_x.dtype not in (torch.complex64, torch.complex128) or spec_y.dtype != spec_x.dtype:
        raise TypeError(f"the Triton kernel takes complex64 or complex128 spectra, got {spec_x.dtype}, {spec_y.dtype}")
    if projections.dtype != spec_x.real.dtype:
        raise TypeError(f"projections must be {spec_x.real.dtype} like the spectra's parts, got {projections.dtype}")
    if not (spec_x.device == spec_y.device == projections.device):
        raise ValueError(f"spectra and projections on different devices: {spec_x.device}, {spec_y.device}, "
                         f"{projections.device}")  # fmt: skip
    (_, _, kh, kw), (h, w) = projections.shape, spec_x.shape[-2:]
    if h < kh or w < kw:
        raise ValueError(f"spectra {tuple(spec_x.shape)} are smaller than the {kh}x{kw} projections")
    if (h - kh + 1) * (w - kw + 1) > 2**30:  # a packed sort key holds the position beside the row and the value
        raise ValueError(f"spectra {tuple(spec_x.shape)} give over 2^30 projected values per row")


def _triton():
    from strsr.kernels import spectral_sw_triton

    return spectral_sw_triton


class SpectralSlicedWassersteinFunction(torch.autograd.Function):
    """Triton forward/backward of `spectral_sliced_wasserstein_ref`; gradients to the spectra, not the filters."""

    @staticmethod
    def forward(ctx, spec_x, spec_y, projections, phase_weight: float):
        if ctx.needs_input_grad[2]:
            raise NotImplementedError("the Triton spectral SW has no gradient for the projections; "
                                      "use backend='reference' or detach them")  # fmt: skip
        grad_x, grad_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        out, sign_x, sign_y = _triton().forward(spec_x, spec_y, projections, phase_weight, grad_x, grad_y)
        ctx.save_for_backward(spec_x if grad_x else None, spec_y if grad_y else None, projections, sign_x, sign_y)
        ctx.phase_weight = phase_weight
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        spec_x, spec_y, projections, sign_x, sign_y = ctx.saved_tensors
        num_proj, _, kh, kw = projections.shape
        h, w = (spec_x if spec_x is not None else spec_y).shape[-2:]
        weights = torch.tensor([1.0, ctx.phase_weight], dtype=projections.dtype, device=projections.device)
        scale = grad_out.to(projections.dtype)[:, None] * weights / (num_proj * (h - kh + 1) * (w - kw + 1))  # (B, 2)
        kernels = _triton()
        grad_x = None if spec_x is None else kernels.backward(spec_x, sign_x, projections, scale)
        grad_y = None if spec_y is None else kernels.backward(spec_y, sign_y, projections, scale)
        return grad_x, grad_y, None, None


def spectral_sliced_wasserstein(
    spec_x: torch.Tensor,
    spec_y: torch.Tensor,
    projections: torch.Tensor,
    phase_weight: float = 1.0,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """`spectral_sliced_wasserstein_ref` on the kernel backend `strsr.kernels.dispatch` picks (`backend=`); (B,).

    The Triton path takes complex64/complex128 spectra (B, C, H, W) with H, W >= the filter size, projections
    (P, C, kh, kw) of the matching real dtype on the same device, and differentiates both spectra (not the filters).
    """
    if resolve_kernel_backend(backend, spec_x) == "reference":
        return spectral_sliced_wasserstein_ref(spec_x, spec_y, projections, phase_weight)
    _check_triton_inputs(spec_x, spec_y, projections)
    return SpectralSlicedWassersteinFunction.apply(spec_x, spec_y, projections, float(phase_weight))
