"""Grid-score sweep: the periodic-artifact score (and the previous, lattice-averaged one) of synthetic grids of
several shapes and amplitudes added to real photographs, and of the clean photos and their bicubic x4 upscales.

    python -m strsr.bench.grid_sweep [--periods 16 8] [--photos chelsea coffee ...] [--json out/grid_sweep.json]

Every image is rounded to 8 bits, as an output file would be. Patterns (zero mean, peak 1, times the amplitude in
8-bit levels): "harmonic" one cosine across x; "product" cos(x) cos(y), the pattern the issue measured; "dit" the
token patch split in 2x2 piecewise-constant blocks of random offsets, repeated every period (the error the tiny DiT's
shared unpatchify layer makes at each of a token's 2x2 latent positions); "tile" a random period x period tile
(every harmonic); "lines" 1-px lines on the token borders; "mosaic" a random offset per token, not repeated (no energy
on the lattice, shown for what the score does not see).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from strsr.bench.report import write_results
from strsr.evaluation.grid_artifacts import _luminance, _windows, grid_artifact_score, window_size

log = logging.getLogger("strsr.bench")

PHOTOS = ("chelsea", "coffee", "astronaut", "camera", "rocket")
PATTERNS = ("harmonic", "product", "dit", "tile", "lines", "mosaic")
AMPLITUDES = (0, 1, 2, 4, 8)  # 8-bit levels


def photo(name: str) -> torch.Tensor:
    """(3, H, W) float64 in [0, 1] from scikit-image's bundled photos, cropped to multiples of 16."""
    from skimage import data

    array = np.asarray(getattr(data, name)())
    array = array[: array.shape[0] // 16 * 16, : array.shape[1] // 16 * 16]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return torch.from_numpy(array[..., :3].copy()).permute(2, 0, 1).double() / 255


def pattern(kind: str, height: int, width: int, period: int, shift: tuple[int, int] = (0, 0),
            seed: int = 0) -> torch.Tensor:  # fmt: skip
    """(H, W) float64 pattern `kind` (see the module docstring), zero mean over a period, peak 1, shifted by `shift`."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = height + period, width + period  # room for the shift
    y = torch.arange(rows, dtype=torch.float64)[:, None]
    x = torch.arange(cols, dtype=torch.float64)[None, :]
    if kind == "harmonic":
        full = torch.cos(2 * math.pi * x / period).expand(rows, cols)
    elif kind == "product":
        full = torch.cos(2 * math.pi * x / period) * torch.cos(2 * math.pi * y / period)
    elif kind == "mosaic":
        blocks = torch.rand(rows // period + 1, cols // period + 1, generator=generator, dtype=torch.float64) * 2 - 1
        full = blocks.repeat_interleave(period, 0).repeat_interleave(period, 1)
    else:
        if kind == "dit":
            half = period // 2
            tile = torch.rand(2, 2, generator=generator, dtype=torch.float64)
            tile = tile.repeat_interleave(half, 0).repeat_interleave(half, 1)
        elif kind == "tile":
            tile = torch.rand(period, period, generator=generator, dtype=torch.float64)
        elif kind == "lines":
            tile = torch.zeros(period, period, dtype=torch.float64)
            tile[0, :] = tile[:, 0] = 1
        else:
            raise ValueError(f"unknown pattern {kind!r}; expected one of {', '.join(PATTERNS)}")
        tile = tile - tile.mean()
        full = (tile / tile.abs().max()).repeat(rows // period + 1, cols // period + 1)
    return full[shift[0]:shift[0] + height, shift[1]:shift[1] + width]


def add_pattern(image: torch.Tensor, kind: str, levels: float, period: int, **kwargs) -> torch.Tensor:
    """`image` plus `levels` 8-bit levels of the pattern, clamped to [0, 1] (not rounded)."""
    return (image + levels / 255 * pattern(kind, *image.shape[-2:], period, **kwargs)).clamp(0, 1)


def to_8bit(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0, 1) * 255).round() / 255


def bicubic_x4(image: torch.Tensor) -> torch.Tensor:
    """Antialiased bicubic x1/4 then bicubic x4, rounded to 8 bits: a plain upscale with no grid of its own."""
    low = F.interpolate(image[None], scale_factor=0.25, mode="bicubic", antialias=True)
    return to_8bit(F.interpolate(low, scale_factor=4, mode="bicubic"))[0]


@torch.no_grad()
def old_score(images: torch.Tensor, period: int = 16) -> torch.Tensor:
    """The previous statistic (commit 97857a4), for the comparison column only: per window, the mean over all lattice
    points of 10 log10(linear 3x3 peak mean / linear ring mean); then the mean over windows."""
    luma = _luminance(images)
    windows = _windows(luma, window_size(*luma.shape[-2:], period))
    batch, count, n, _ = windows.shape
    hann = torch.hann_window(n, periodic=True, dtype=windows.dtype)
    power = torch.fft.fft2((windows - windows.mean(dim=(-2, -1), keepdim=True)) * hann[:, None] * hann[None, :])
    power = power.abs().square().reshape(batch * count, 1, n, n)
    padded = F.pad(power, (4,) * 4, mode="circular")
    peak = F.avg_pool2d(padded, 3, stride=1)[..., 3:3 + n, 3:3 + n]
    ring = ((F.avg_pool2d(padded, 9, stride=1) * 81 - peak * 9) / 72).clamp_min(0)
    index = torch.arange(0, n, n // period)
    peak = peak[..., index[:, None], index[None, :]].reshape(batch, count, -1)[..., 1:]
    ring = ring[..., index[:, None], index[None, :]].reshape(batch, count, -1)[..., 1:]
    eps = 1e-10 * power.reshape(batch, count, -1).mean(-1, keepdim=True) + torch.finfo(power.dtype).tiny
    return (10 * torch.log10((peak + eps) / (ring + eps))).mean(dim=(1, 2))


def sweep(periods=(16, 8), photos=PHOTOS, patterns=PATTERNS, amplitudes=AMPLITUDES) -> list[dict]:
    """One row per (period, photo, pattern, amplitude) with the new and the old score; pattern "clean" and
    "bicubic-x4" rows (amplitude 0) for the floor."""
    rows = []
    for period in periods:
        for name in photos:
            image = photo(name)
            cases = [("clean", 0, to_8bit(image)), ("bicubic-x4", 0, bicubic_x4(image))]
            cases += [(kind, a, to_8bit(add_pattern(image, kind, a, period))) for kind in patterns
                      for a in amplitudes if a > 0]  # fmt: skip
            for kind, amplitude, x in cases:
                rows.append({"period": period, "photo": name, "pattern": kind, "amplitude": amplitude,
                             "score": float(grid_artifact_score(x, period)), "old": float(old_score(x, period))})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per (period, pattern, amplitude), one `new (old)` column per photo."""
    photos = list(dict.fromkeys(r["photo"] for r in rows))
    lines = ["| period | pattern | levels | " + " | ".join(photos) + " |", "|---" * (3 + len(photos)) + "|"]
    keys = list(dict.fromkeys((r["period"], r["pattern"], r["amplitude"]) for r in rows))
    for period, kind, amplitude in keys:
        cells = {r["photo"]: f"{r['score']:.1f} ({r['old']:.2f})" for r in rows
                 if (r["period"], r["pattern"], r["amplitude"]) == (period, kind, amplitude)}  # fmt: skip
        levels = f"±{amplitude}" if amplitude else "-"
        lines.append(f"| {period} | {kind} | {levels} | " + " | ".join(cells.get(p, "") for p in photos) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.grid_sweep", description=__doc__.splitlines()[0])
    p.add_argument("--periods", type=int, nargs="+", default=[16, 8], help="grid periods in pixels")
    p.add_argument("--photos", nargs="+", default=list(PHOTOS), help="scikit-image photo names")
    p.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS, help="pattern shapes")
    p.add_argument("--json", type=Path, help="write the rows here (with the machine it ran on)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    rows = sweep(tuple(args.periods), tuple(args.photos), tuple(args.patterns))
    log.info("grid score in dB, new (old) per photo; 8-bit images\n%s", table(rows))
    write_results(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
