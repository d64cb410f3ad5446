"""The periodic-artifact score on real photographs: monotone in a synthetic 16-px grid's amplitude, blind to its
phase, near its floor on clean photos and their bicubic upscales, and far more sensitive than PSNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from strsr.evaluation.grid_artifacts import artifact_period, grid_artifact_score, grid_artifact_scores, window_size
from strsr.presets import FLUX2_KLEIN_4B, TINY, ZIMAGE_TURBO

PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket")
# Clean photographs score a little below 0 dB (peak bins vs their ring on a smooth, convex spectrum); measured on
# these photos: -0.90 to -0.68 dB, bicubic x4 upscales -1.96 to -1.23 dB.
FLOOR_DB = 0.0


def photo(name: str) -> torch.Tensor:
    """(3, H, W) float64 in [0, 1], cropped to multiples of 4 (x4 round trips keep the size)."""
    array = np.asarray(getattr(data, name)())
    array = array[: array.shape[0] // 4 * 4, : array.shape[1] // 4 * 4]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return torch.from_numpy(array[..., :3].copy()).permute(2, 0, 1).double() / 255


def grid_pattern(height: int, width: int, period: int = 16, shift=(0, 0), seed: int = 0) -> torch.Tensor:
    """(H, W) a random period x period tile repeated (zero mean, peak 1), shifted by `shift` pixels: a grid that
    carries all the harmonics of the period, like a DiT's patch artifact."""
    tile = torch.rand(period, period, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    tile = (tile - tile.mean()) / (tile - tile.mean()).abs().max()
    big = tile.repeat(height // period + 2, width // period + 2)
    return big[shift[0]:shift[0] + height, shift[1]:shift[1] + width]


def with_grid(image: torch.Tensor, amplitude: float, **kwargs) -> torch.Tensor:
    return (image + amplitude * grid_pattern(*image.shape[-2:], **kwargs)).clamp(0, 1)


def quantise(image: torch.Tensor) -> torch.Tensor:
    return (image * 255).round() / 255


def score(image: torch.Tensor) -> float:
    return float(grid_artifact_score(image, period=16))


@pytest.mark.parametrize("name", PHOTOS)
def test_score_rises_monotonically_with_the_grid_amplitude(name):
    clean = photo(name)
    amplitudes = [0, 0.5, 1, 2, 4, 8, 16]  # in 8-bit levels
    scores = [score(with_grid(clean, a / 255)) for a in amplitudes]
    assert all(b > a for a, b in zip(scores, scores[1:])), scores
    assert scores[0] < FLOOR_DB < scores[-1] - 5


@pytest.mark.parametrize("name", PHOTOS)
def test_clean_photos_and_bicubic_upscales_stay_near_the_floor(name):
    clean = photo(name)
    lr = F.interpolate(clean[None], scale_factor=0.25, mode="bicubic", antialias=True)
    upscaled = quantise(F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1))[0]
    assert -1.2 < score(clean) < FLOOR_DB
    assert -2.5 < score(upscaled) < FLOOR_DB


def test_score_is_invariant_to_the_grid_phase():
    clean = photo("chelsea")
    shifts = [(0, 0), (3, 11), (8, 8), (15, 1), (7, 0)]
    scores = [score(with_grid(clean, 4 / 255, shift=s)) for s in shifts]
    # on a photo only the pattern x image cross terms move with the phase: a few percent of the rise it causes
    rise = min(scores) - score(clean)
    assert rise > 5 and max(scores) - min(scores) < 0.05 * rise, scores
    # the pattern alone, on a flat grey field: exactly the same power at every lattice point whatever the shift
    alone = [score(0.5 + 0.1 * grid_pattern(256, 256, shift=s)) for s in shifts]
    assert max(alone) - min(alone) < 1e-6, alone


def test_grid_invisible_to_psnr_is_visible_to_the_score():
    """A one-level grid on a bicubic upscale barely moves PSNR against the ground truth, but clearly moves the score."""
    separations = []
    for name in PHOTOS:
        gt = photo(name)
        lr = F.interpolate(gt[None], scale_factor=0.25, mode="bicubic", antialias=True)
        output = quantise(F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1))[0]
        artifacted = quantise(with_grid(output, 1 / 255))
        to_u8 = lambda x: (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
        psnr_clean = peak_signal_noise_ratio(to_u8(gt), to_u8(output))
        psnr_grid = peak_signal_noise_ratio(to_u8(gt), to_u8(artifacted))
        assert abs(psnr_clean - psnr_grid) < 0.1
        separations.append(score(artifacted) - score(output))
    assert min(separations) > 1.0, separations


def test_other_periods_and_the_gt_excess():
    clean = photo("astronaut")
    gridded = with_grid(clean, 4 / 255, period=8)
    # an 8-px grid also sits on the 16-px lattice (every other point), but a 16-px grid is not on the 8-px one
    assert float(grid_artifact_score(gridded, period=8)) > score(clean) + 3
    gridded16 = with_grid(clean, 4 / 255, period=16)
    assert float(grid_artifact_score(gridded16, period=8)) < float(grid_artifact_score(gridded16, period=16)) - 1
    _, excess = grid_artifact_scores(torch.stack([gridded16, clean]), torch.stack([clean, clean]))
    assert excess[0] > 3 and excess[1] == 0


def test_batched_shapes_and_errors():
    image = photo("chelsea")
    batch = torch.stack([image, with_grid(image, 8 / 255)]).float()
    scores = grid_artifact_score(batch)
    assert scores.shape == (2,) and scores[1] > scores[0]
    assert torch.allclose(grid_artifact_score(batch[:1]), scores[:1])
    gray = grid_artifact_score(batch[:, :1])
    assert gray.shape == (2,)
    with pytest.raises(ValueError, match="too small"):
        grid_artifact_score(torch.rand(3, 100, 300))
    with pytest.raises(ValueError, match="expected"):
        grid_artifact_score(torch.rand(2, 4, 128, 128))
    assert window_size(300, 451, 16) == 128 and window_size(128, 1000, 16) == 128


def test_artifact_period_of_the_presets():
    assert artifact_period(FLUX2_KLEIN_4B) == 16 and artifact_period(ZIMAGE_TURBO) == 16
    assert artifact_period(TINY) == 8
