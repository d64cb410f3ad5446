"""Periodic-artifact score: how strongly an image carries a grid of a given period, in dB over its local spectrum.

One-step DiT super-resolution leaves grid-like artifacts whose period in pixels is the DiT token patch times the VAE
factor (16 px for FLUX.2 klein and Z-Image: 2 x 8; 8 px for the tiny DiT), from high-frequency spectral leakage
(StrSR paper, Sec. 3.3 and Fig. 6). A pattern that repeats every `period` pixels has all its energy on the lattice of
frequencies (u, v) / period cycles per pixel; a natural image has a broad spectrum that is smooth around those points.
So, per half-overlapping window (side `n`, a multiple of `period`, so that every lattice frequency falls exactly on a
DFT bin, `n / period` bins apart):

1. luminance (BT.601), mean removed, times a 2-D periodic Hann window (no bright cross from the window's edges);
2. log power spectrum, 10 log10(|FFT|^2 + floor); the floor is the power of white noise of `NOISE_FLOOR_LEVELS`
   8-bit levels RMS: spectral detail fainter than that is not a grid a viewer sees (it also absorbs 8-bit rounding
   and the faint period-4 residue of bicubic x4 upscaling, which sits on the 8- and 16-px lattices);
3. at each lattice point (DC excluded): the lattice bin's log power minus the mean log power of the ring of bins 2 to
   4 away (Chebyshev distance; clear of the harmonic's 3-bin Hann lobe and of the neighbouring lattice points). Log
   means on both sides centre the null on 0 dB: the periodogram's chi-square bias is the same for every bin, and
   the log of a power-law spectrum is a harmonic function, whose mean over a symmetric ring is its centre value (the
   old linear ring mean put clean photos about -0.7 dB below, bicubic upscales -1.8 dB).

The per-point excess is averaged over the windows (each window weighs the same: one patch of real periodic texture
moves it little), and the image's score is the strongest lattice point's excess. A grid is seen by its strongest
harmonic: the previous score averaged the ratio over all period^2 - 1 lattice points, so a grid concentrated on a
few points (one cosine puts its energy on 2 of 255) was diluted to a fraction of a dB. The maximum of many noisy
points sets a floor of a few dB on clean photos (about 1.5 to 3 dB for 16 px, 0.5 to 2.5 dB for 8 px on
scikit-image's photos; bicubic x4 upscales 2.5 to 5 dB); a grid of +-1 8-bit level already moves it, +-8 levels by
over 9 dB, whatever its shape. A bin-aligned periodic pattern puts the same power in its bins whatever its position,
so the score is phase-invariant (on a photo up to the cross terms with the photo's own content at those bins: a
single harmonic's score moves by up to a fifth of its rise with the shift, a many-harmonic tile's by a few percent).
Against a ground truth, `grid_artifact_scores` subtracts the GT's own score (its strongest point, not point by point),
which removes whatever periodic content the scene really has (brick walls, JPEG's 8-px blocks on the 8- and 16-px
lattices).
An aperiodic mosaic (random per-block offsets) has no energy at the lattice (its sinc^2 spectrum is zero there) and is
not what this score measures; the same statistic on the gradient magnitude would see its seams, but also the period-4
structure of every bicubic x4 upscale (6 to 10 dB, above a +-8-level mosaic's 7 to 9 dB), so it is left out.

Works on any device, batched; cheap enough to log during training (see `grid_artifact_score`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from strsr.io.images import BT601_LUMA

__all__ = ["artifact_period", "grid_artifact_score", "grid_artifact_scores", "window_size"]

LOBE_RADIUS = 1  # a Hann-windowed, bin-aligned sinusoid spreads over 3x3 bins: the ring starts outside them
RING_RADIUS = 4  # background ring: bins 2..4 away from the lattice bin
MIN_PERIODS = RING_RADIUS * 2  # lattice points must sit >= 8 bins apart so rings never touch a neighbouring lobe
DEFAULT_PERIODS = 8  # window side in periods (128 px for a 16-px grid)
NOISE_FLOOR_LEVELS = 2.0  # RMS, in 8-bit levels, of the white noise whose power floors every bin (visibility)


def artifact_period(preset) -> int:
    """The grid period in pixels a preset's DiT produces: token patch (2x2 in both families) times the VAE factor."""
    return preset.latents.pixel_multiple


def window_size(height: int, width: int, period: int, periods: int = DEFAULT_PERIODS) -> int:
    """Window side: `periods` periods, shrunk to the largest multiple of `period` that fits the image."""
    if period < 2:
        raise ValueError(f"period must be at least 2 pixels, got {period}")
    side = min(periods * period, min(height, width) // period * period)
    if side < MIN_PERIODS * period:
        raise ValueError(
            f"image {height}x{width} is too small for the {period}-px grid score: it needs at least "
            f"{MIN_PERIODS * period} px on each side ({MIN_PERIODS} periods)"
        )
    return side


def _luminance(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) | (3, H, W) | (B, 1, H, W) | (H, W) in [0, 1] -> (B, H, W) float64 (BT.601 luma)."""
    x = images.detach().to(torch.float64)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 3, H, W), (3, H, W), (B, 1, H, W) or (H, W) images, got {tuple(images.shape)}")
    if x.shape[1] == 1:
        return x[:, 0]
    weights = torch.tensor(BT601_LUMA, dtype=x.dtype, device=x.device)
    return torch.einsum("bchw,c->bhw", x, weights)


def _windows(luma: torch.Tensor, side: int) -> torch.Tensor:
    """(B, H, W) -> (B, K, side, side): half-overlapping windows covering the image from its top-left corner."""
    stride = side // 2
    tiles = luma.unfold(1, side, stride).unfold(2, side, stride)  # (B, nh, nw, side, side)
    return tiles.reshape(luma.shape[0], -1, side, side)


def _lattice_excess_db(windows: torch.Tensor, period: int) -> torch.Tensor:
    """(B, K, n, n) windows -> (B, K, L) excess of each of the L = period^2 - 1 lattice bins over its ring, in dB."""
    batch, count, n, _ = windows.shape
    hann = torch.hann_window(n, periodic=True, dtype=windows.dtype, device=windows.device)
    centred = windows - windows.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred * hann[:, None] * hann[None, :]).abs().square()  # (B, K, n, n)
    # white noise of variance s^2 has E|FFT|^2 = s^2 * sum(w^2) for a window w (here the 2-D Hann, separable)
    floor = (NOISE_FLOOR_LEVELS / 255) ** 2 * float(hann.square().sum()) ** 2
    log_power = 10 * torch.log10(power + floor).reshape(batch * count, 1, n, n)
    # Box means on the circular spectrum (DFT bins wrap around), as mean pools over a circularly padded copy.
    padded = F.pad(log_power, (RING_RADIUS,) * 4, mode="circular")
    inner = 2 * LOBE_RADIUS + 1
    outer = 2 * RING_RADIUS + 1
    offset = RING_RADIUS - LOBE_RADIUS
    lobe = F.avg_pool2d(padded, inner, stride=1)[..., offset:offset + n, offset:offset + n]  # (BK, 1, n, n)
    box = F.avg_pool2d(padded, outer, stride=1)  # (BK, 1, n, n)
    ring = (box * outer**2 - lobe * inner**2) / (outer**2 - inner**2)
    step = n // period
    index = torch.arange(0, n, step, device=windows.device)
    excess = (log_power - ring)[..., index[:, None], index[None, :]]  # (BK, 1, period, period)
    return excess.reshape(batch, count, -1)[..., 1:]  # drop DC


@torch.no_grad()
def grid_artifact_score(images: torch.Tensor, period: int = 16, periods: int = DEFAULT_PERIODS) -> torch.Tensor:
    """Periodic-artifact score of each image, in dB; higher means a stronger `period`-px grid.

    images: (B, 3, H, W), (3, H, W), (B, 1, H, W) or (H, W), float in [0, 1], any device; sides of at least
    8 periods. Returns (B,) float64 on the images' device: the strongest lattice point's excess over its local
    spectrum, averaged over windows. `periods` sets the window side (default 8 periods).
    """
    luma = _luminance(images)
    side = window_size(luma.shape[-2], luma.shape[-1], period, periods)
    excess = _lattice_excess_db(_windows(luma, side), period)  # (B, K, L)
    return excess.mean(dim=1).amax(dim=1)


def grid_artifact_scores(pred: torch.Tensor, gt: torch.Tensor | None = None,
                         period: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """(score of `pred`, its excess over the ground truth `gt`'s score, or None without one): the grid the method
    added, in dB. `gt` must have `pred`'s size."""
    score = grid_artifact_score(pred, period)
    if gt is None:
        return score, None
    if pred.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in size")
    return score, score - grid_artifact_score(gt, period)
