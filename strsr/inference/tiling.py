"""Output-space tiling as the official StrSR scripts tile (`infer_tiled` in test_flux.py / test_zimage.py), so that
memory stays bounded by one tile and the blended result is the official one.

The plan, for an image already padded to the model's pixel multiple:
- Tile starts per axis (`tile_starts`): 0, stride, 2 * stride, ... with stride = tile - overlap, as long as a full
  tile fits; then one more start, length - tile, so the last tile ends flush with the edge (it overlaps its
  neighbour by more than `overlap`). A side no longer than the tile is one tile of the side's length.
- Blending weights (`feather_weights`): 1, times `linspace(0, 1, overlap)` over the first `overlap` rows (columns)
  of a tile whose top (left) is not the image edge, and `linspace(1, 0, overlap)` over the last `overlap` rows
  (columns) of one whose bottom (right) is not the edge, multiplied in that order. Facing ramps of neighbours
  `overlap` apart sum to 1; where the last tile overlaps more, the weighted sum is normalised anyway.
- `blend_tiles` accumulates `pixels * weights` and the weights in float32 and divides by the weight sum (floored at
  1e-6, as the official code does), streaming finished rows so that only one band of tile height is held. Clamping
  is the caller's, once, after the division.

`overlap == 0` (which the official code cannot run with more than one tile) means no ramps: tiles abut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

_MIN_WEIGHT_SUM = 1e-6  # the official division floor


@dataclass(frozen=True)
class Tile:
    """One window of the image: rows [top, bottom) and columns [left, right)."""

    top: int
    left: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.top < 0 or self.left < 0:
            raise ValueError(f"Tile origin must be non-negative, got top={self.top}, left={self.left}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Tile size must be positive, got height={self.height}, width={self.width}")

    @property
    def bottom(self) -> int:
        """Exclusive end row."""
        return self.top + self.height

    @property
    def right(self) -> int:
        """Exclusive end column."""
        return self.left + self.width

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices for indexing the last two dims of a (..., H, W) tensor: `x[..., rows, cols]`."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


def _validate_grid(tile: int, overlap: int) -> None:
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must satisfy 0 <= overlap < tile, got overlap={overlap}, tile={tile}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts along one axis of `length` pixels; window k spans [starts[k], starts[k] + min(tile, length)).

    Starts step by tile - overlap from 0 while a whole tile fits; a last start at length - tile is added when
    the steps do not land on it, so the last window ends exactly at `length`.
    """
    _validate_grid(tile, overlap)
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    last = max(0, length - tile)
    starts = list(range(0, last + 1, tile - overlap))
    if starts[-1] != last:
        starts.append(last)
    return starts


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering an (height, width) image; the product of `tile_starts` along each axis."""
    rows = tile_starts(height, tile, overlap)
    cols = tile_starts(width, tile, overlap)
    return [Tile(top, left, min(tile, height), min(tile, width)) for top in rows for left in cols]


def feather_weights(
    tile: Tile, height: int, width: int, overlap: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """(1, 1, tile.height, tile.width) float32 blending weights for `tile` inside a (height, width) image: the
    official ramps on each side that is not the image edge (see the module docstring), applied top, bottom, left,
    right in that order so the products round as the official code's do."""
    if overlap < 0:
        raise ValueError(f"overlap must be non-negative, got {overlap}")
    if tile.bottom > height or tile.right > width:
        raise ValueError(f"{tile} does not fit in a {height}x{width} image")
    weights = torch.ones(1, 1, tile.height, tile.width, dtype=torch.float32, device=device)
    if overlap == 0:
        return weights
    rising = torch.linspace(0, 1, overlap, device=device)
    falling = torch.linspace(1, 0, overlap, device=device)
    if tile.top > 0:
        weights[:, :, :overlap, :] *= rising.view(1, 1, -1, 1)
    if tile.bottom < height:
        weights[:, :, -overlap:, :] *= falling.view(1, 1, -1, 1)
    if tile.left > 0:
        weights[:, :, :, :overlap] *= rising.view(1, 1, 1, -1)
    if tile.right < width:
        weights[:, :, :, -overlap:] *= falling.view(1, 1, 1, -1)
    return weights


def blend_tiles(
    produce: Callable[[Tile], torch.Tensor],
    batch: int,
    channels: int,
    height: int,
    width: int,
    tile: int,
    overlap: int,
    progress: Callable[[int | None], object] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The blend of `produce(tile)` (B, C, tile.height, tile.width) over the plan of an (height, width) image, as
    finished row blocks: yields (top, rows) with rows (B, C, h, width) float32 on the CPU, top to bottom.

    Rows are final once the plan moves past them, so only one band of tile height is held in float32: memory is
    O(tile x width) whatever the image height. Each pixel still accumulates its tiles in plan order and is divided
    by its weight sum (floored at 1e-6), so the values are those of a whole-image canvas. `progress`, if given, is
    called with the number of tiles once, then with None after each tile.
    """
    tiles = plan_tiles(height, width, tile, overlap)
    band_height = min(tile, height)
    band = torch.zeros(batch, channels, band_height, width)
    weight_sum = torch.zeros(1, 1, band_height, width)
    top = 0
    if progress is not None:
        progress(len(tiles))
    for t in tiles:
        if t.top != top:  # a new row of tiles: the rows above it are finished
            done = t.top - top
            yield top, band[..., :done, :] / weight_sum[..., :done, :].clamp_min(_MIN_WEIGHT_SUM)
            band = torch.cat([band[..., done:, :], band.new_zeros(batch, channels, done, width)], dim=2)
            weight_sum = torch.cat([weight_sum[..., done:, :], weight_sum.new_zeros(1, 1, done, width)], dim=2)
            top = t.top
        pixels = produce(t)
        expected = (batch, channels, t.height, t.width)
        if tuple(pixels.shape) != expected:
            raise ValueError(f"pixels for {t} must have shape {expected}, got {tuple(pixels.shape)}")
        weights = feather_weights(t, height, width, overlap)
        rows, cols = slice(t.top - top, t.bottom - top), slice(t.left, t.right)
        band[..., rows, cols] += pixels.to(device="cpu", dtype=torch.float32) * weights
        weight_sum[..., rows, cols] += weights
        if progress is not None:
            progress(None)
    yield top, band / weight_sum.clamp_min(_MIN_WEIGHT_SUM)


def run_tiled(
    produce: Callable[[Tile], torch.Tensor],
    batch: int,
    channels: int,
    height: int,
    width: int,
    tile: int,
    overlap: int,
    progress: Callable[[int | None], object] | None = None,
) -> torch.Tensor:
    """The whole (B, C, H, W) float32 blend of `blend_tiles`, on the CPU."""
    blocks = blend_tiles(produce, batch, channels, height, width, tile, overlap, progress)
    return torch.cat([rows for _, rows in blocks], dim=2)
