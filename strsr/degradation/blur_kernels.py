"""Blur kernels of the RealESRGAN degradation (Wang et al., ICCVW 2021, Sec. 3.1 and 3.3), batched in torch.

Every builder takes per-sample parameters as (B,) tensors and returns (B, size, size) kernels that sum to 1, so a
whole batch of different kernels is one tensor expression (then one grouped conv2d in `strsr.degradation.realesrgan`).

Coordinates: x runs along columns, y along rows, both from -(size // 2) to size // 2. A kernel with odd support
k < size is computed on the centred k x k window, normalised there and zero-padded to size x size; this is the
same kernel as building it at size k and padding, which is how the paper draws kernel sizes 7..21.

Shapes of the kernel family, with q = [x, y] Sigma^-1 [x, y]^T and Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R^T:
    Gaussian              exp(-q / 2)
    generalized Gaussian  exp(-q^beta / 2)
    plateau               1 / (1 + q^beta)
    sinc (circular low-pass, ideal 2-D filter of cutoff omega_c)  omega_c J1(omega_c r) / (2 pi r), centre
        omega_c^2 / (4 pi)
Kernels are computed in float64 (the exponent reaches -1e3 for sigma 0.2) and returned in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from strsr.degradation.config import KERNEL_TYPES

KERNEL_SIZE = 21


def _grid(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(size, size) float64 x (column) and y (row) offsets from the centre."""
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    ax = torch.arange(size, dtype=torch.float64, device=device) - size // 2
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    return x, y


def _as_batch(value: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """(B, 1, 1) float64 view of a per-sample parameter (a scalar is broadcast)."""
    value = torch.as_tensor(value, dtype=torch.float64, device=device)
    return value.expand(batch).reshape(batch, 1, 1)


def quadratic_form(sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """q = [x, y] Sigma^-1 [x, y]^T on the size x size grid.

    sigma_x, sigma_y, theta: (B,) (standard deviations along the rotated axes, rotation in radians).
    Returns (B, size, size) float64.
    """
    batch, device = sigma_x.shape[0], sigma_x.device
    sx, sy, th = (_as_batch(v, batch, device) for v in (sigma_x, sigma_y, theta))
    x, y = _grid(size, device)
    # Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T, written out so the batch stays one elementwise expression.
    c, s = torch.cos(th), torch.sin(th)
    u, v = 1 / sx**2, 1 / sy**2
    a, b, d = c * c * u + s * s * v, c * s * (u - v), s * s * u + c * c * v
    return a * x * x + 2 * b * x * y + d * y * y


def _restrict(kernels: torch.Tensor, support: torch.Tensor | None) -> torch.Tensor:
    """Zero outside the centred odd support (B,) (None: the full grid), then normalise each kernel to sum 1."""
    if support is not None:
        size = kernels.shape[-1]
        x, y = _grid(size, kernels.device)
        half = (_as_batch(support, kernels.shape[0], kernels.device) - 1) / 2
        kernels = kernels * ((x.abs() <= half) & (y.abs() <= half))
    kernels = kernels / kernels.sum(dim=(-2, -1), keepdim=True)
    # Far tails (exp(-1e3) for sigma 0.2) would be float32 subnormals, which slow CPU convolutions many-fold.
    return torch.where(kernels.abs() < torch.finfo(torch.float32).tiny, 0.0, kernels).float()


def gaussian_kernels(sigma_x, sigma_y, theta, size: int = KERNEL_SIZE, support=None) -> torch.Tensor:
    """Anisotropic Gaussian kernels. Parameters (B,) float tensors; support (B,) odd ints or None.

    Returns (B, size, size) float32, each summing to 1.
    """
    return _restrict(torch.exp(-0.5 * quadratic_form(sigma_x, sigma_y, theta, size)), support)


def generalized_gaussian_kernels(sigma_x, sigma_y, theta, beta, size: int = KERNEL_SIZE, support=None):
    """exp(-q^beta / 2) kernels (beta (B,) > 0; beta = 1 is the Gaussian). Returns (B, size, size) float32."""
    q = quadratic_form(sigma_x, sigma_y, theta, size)
    return _restrict(torch.exp(-0.5 * q.pow(_as_batch(beta, q.shape[0], q.device))), support)


def plateau_kernels(sigma_x, sigma_y, theta, beta, size: int = KERNEL_SIZE, support=None):
    """1 / (1 + q^beta) kernels (flat top, heavy tails). Returns (B, size, size) float32."""
    q = quadratic_form(sigma_x, sigma_y, theta, size)
    return _restrict(1 / (1 + q.pow(_as_batch(beta, q.shape[0], q.device))), support)


def sinc_kernels(omega_c: torch.Tensor, size: int = KERNEL_SIZE, support=None) -> torch.Tensor:
    """Circular low-pass (2-D sinc) kernels of cutoff omega_c (B,) in radians/pixel, which ring like real
    over-sharpened or band-limited images. Returns (B, size, size) float32, each summing to 1."""
    batch, device = omega_c.shape[0], omega_c.device
    w = _as_batch(omega_c, batch, device)
    x, y = _grid(size, device)
    r = torch.sqrt(x * x + y * y)
    r_safe = torch.where(r > 0, r, torch.ones_like(r))  # the centre takes the r -> 0 limit below
    kernels = w * torch.special.bessel_j1(w * r_safe) / (2 * math.pi * r_safe)
    kernels = torch.where(r > 0, kernels, w**2 / (4 * math.pi))
    return _restrict(kernels, support)


def pulse_kernels(batch: int, size: int = KERNEL_SIZE, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, size, size) float32 identity kernels (1 at the centre)."""
    kernels = torch.zeros(batch, size, size, device=device)
    kernels[:, size // 2, size // 2] = 1
    return kernels


def _uniform(batch: int, bounds: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """(B,) float64 uniform draws in [lo, hi] on the generator's device."""
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(batch, dtype=torch.float64, generator=generator, device=generator.device)


def _odd_sizes(batch: int, size_range: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """(B,) odd sizes drawn uniformly from the odd numbers in [lo, hi]."""
    lo, hi = size_range
    half = torch.randint(lo // 2, hi // 2 + 1, (batch,), generator=generator, device=generator.device)
    return 2 * half + 1


def _beta(batch: int, bounds: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """(B,) shape exponents: half from [lo, 1], half from [1, hi], as the reference does, so beta < 1 and beta > 1
    are equally likely whatever the range's lengths (with betap = [1, 2] half of the plateau betas are exactly 1)."""
    below = _uniform(batch, (bounds[0], 1.0), generator)
    above = _uniform(batch, (1.0, bounds[1]), generator)
    pick = torch.rand(batch, generator=generator, device=generator.device) < 0.5
    return torch.where(pick, below, above)


def random_kernels(
    batch: int,
    generator: torch.Generator,
    *,
    kernel_probs: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sigma_range: Sequence[float] = (0.2, 3.0),
    betag_range: Sequence[float] = (0.5, 4.0),
    betap_range: Sequence[float] = (1.0, 2.0),
    sinc_prob: float = 0.1,
    size: int = KERNEL_SIZE,
    support_range: tuple[int, int] = (7, 21),
) -> torch.Tensor:
    """Per-sample random blur kernels of one RealESRGAN degradation order.

    Each sample draws an odd support in `support_range`; with probability `sinc_prob` a sinc kernel of cutoff
    U(pi/3, pi) (support < 13) or U(pi/5, pi) (support >= 13), else one of KERNEL_TYPES with `kernel_probs`:
    sigma_x, sigma_y ~ U(sigma_range), theta ~ U(-pi, pi) (iso types: sigma_y = sigma_x, theta = 0), beta from
    `betag_range` (generalized) or `betap_range` (plateau). Every draw uses `generator`, on its device.

    Returns (B, size, size) float32 on the generator's device, each kernel summing to 1.
    """
    if len(kernel_probs) != len(KERNEL_TYPES):
        raise ValueError(f"kernel_probs needs {len(KERNEL_TYPES)} entries ({', '.join(KERNEL_TYPES)})")
    device = generator.device
    support = _odd_sizes(batch, support_range, generator)
    probs = torch.tensor(kernel_probs, dtype=torch.float64, device=device)
    kind = torch.multinomial(probs, batch, replacement=True, generator=generator)
    # Every parameter is drawn for every sample and the unused ones dropped: fixed draw counts keep the stream
    # of random numbers independent of which types came up, and the batch one expression.
    sigma_x = _uniform(batch, sigma_range, generator)
    sigma_y = _uniform(batch, sigma_range, generator)
    theta = _uniform(batch, (-math.pi, math.pi), generator)
    betag = _beta(batch, betag_range, generator)
    betap = _beta(batch, betap_range, generator)
    is_sinc = torch.rand(batch, generator=generator, device=device) < sinc_prob
    narrow = _uniform(batch, (math.pi / 3, math.pi), generator)  # cutoffs for supports below 13
    wide = _uniform(batch, (math.pi / 5, math.pi), generator)
    omega = torch.where(support < 13, narrow, wide)

    isotropic = kind % 2 == 0  # KERNEL_TYPES alternates iso, aniso
    sigma_y = torch.where(isotropic, sigma_x, sigma_y)
    theta = torch.where(isotropic, torch.zeros_like(theta), theta)
    family = kind // 2  # 0 Gaussian, 1 generalized Gaussian, 2 plateau
    beta = torch.where(family == 0, torch.ones_like(betag), torch.where(family == 1, betag, betap))
    qb = quadratic_form(sigma_x, sigma_y, theta, size).pow(beta.view(-1, 1, 1))
    shaped = torch.where((family == 2).view(-1, 1, 1), 1 / (1 + qb), torch.exp(-0.5 * qb))
    shaped = _restrict(shaped, support)
    return torch.where(is_sinc.view(-1, 1, 1), sinc_kernels(omega, size, support), shaped)


def random_final_sinc_kernels(
    batch: int,
    generator: torch.Generator,
    *,
    prob: float = 0.8,
    size: int = KERNEL_SIZE,
    support_range: tuple[int, int] = (7, 21),
) -> torch.Tensor:
    """The last filter of the pipeline: with probability `prob` a sinc kernel (odd support in `support_range`,
    cutoff U(pi/3, pi)), else the identity. Returns (B, size, size) float32 on the generator's device."""
    device = generator.device
    support = _odd_sizes(batch, support_range, generator)
    omega = _uniform(batch, (math.pi / 3, math.pi), generator)
    use = torch.rand(batch, generator=generator, device=device) < prob
    return torch.where(use.view(-1, 1, 1), sinc_kernels(omega, size, support), pulse_kernels(batch, size, device))
