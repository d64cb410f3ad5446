"""Output-space tiling with linear feathering, so super-resolution memory stays bounded by one tile.

An output image of size (H, W) is covered by a row-major grid of overlapping windows of at most `tile` pixels per
side. Each window is produced independently (by the model, or by `run_tiled`'s `fn`) and the windows are blended
with weights that ramp linearly across `overlap` pixels at every side facing a neighbour, then normalised by the
weight sum. Identical tiles therefore reproduce the input up to float rounding, and tile-dependent outputs meet in
a gradual transition instead of a visible seam.

Window placement (per axis, `tile_starts`):
- As few windows as possible subject to: first start 0, neighbouring windows overlapping by at least `overlap`,
  starts multiples of `align` (the pipeline passes 4 so each output window maps to an integer LR region).
- Starts are spread evenly between 0 and the last start rather than stepping by `tile - overlap` and shifting
  only the last window back; the surplus overlap is thus shared by all seams instead of piling up at the last one.
- Every window has size `min(tile, length)` except that the last window is clipped at the image end when
  `length - tile` is not a multiple of `align`: its start is rounded *up* to `align`, so it ends exactly at `length`
  and is shorter than `tile` by less than `align`. With `align` dividing both `length` and `tile` (the pipeline
  case) no window is clipped.

Feathering (`feather_weights`): the ramp on a side facing a neighbour is `(i + 0.5) / overlap` for the i-th pixel
from that side, capped at 1; sides on the image border are not feathered. The ramp length is `overlap`, not the
actual overlap with the neighbour (which a tile alone cannot know and may be larger). Where the actual overlap
equals `overlap` the two ramps sum to exactly 1, a linear partition of unity (and the separable 2D product too).
Where it is larger, each neighbour ramps in over its first `overlap` pixels and the middle of the overlap is an
equal-weight average: still continuous, monotone and with steps of at most about 1 / overlap per pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tile:
    """One window of the output image: rows [top, bottom) and columns [left, right)."""

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


def _validate_grid(tile: int, overlap: int, align: int) -> None:
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must satisfy 0 <= overlap < tile, got overlap={overlap}, tile={tile}")
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if tile % align or overlap % align:
        raise ValueError(f"tile ({tile}) and overlap ({overlap}) must be multiples of align ({align})")


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Window starts covering [0, length); window k spans [starts[k], min(starts[k] + tile, length)).

    The first start is 0 and the last window ends exactly at `length`. Neighbouring windows overlap by at least
    `overlap` pixels, starts are multiples of `align`, and the count is the minimum those constraints allow
    (`ceil((length - tile) / (tile - overlap)) + 1`, or 1 when `length <= tile`). Starts are spread evenly, and
    only the last window may be clipped (by less than `align`) when `length - tile` is not a multiple of `align`.

    Raises ValueError unless length >= 1, tile > 0, 0 <= overlap < tile, align >= 1 and align divides both
    tile and overlap.
    """
    _validate_grid(tile, overlap, align)
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    if length <= tile:
        return [0]
    span = length - tile
    stride = tile - overlap  # a positive multiple of align, so ceil-to-align below never overshoots it
    num_steps = -(-span // stride)
    # Start k is align * ceil(k * span / (num_steps * align)). Consecutive differences are at most
    # ceil(span / num_steps / align) * align <= stride (the overlap guarantee); the last start is span rounded up
    # to align (the window ending at `length`). Middle starts stay <= span, i.e. middle windows are full size,
    # because the step span / num_steps exceeds the rounding slack: it is > stride / 2 >= align when
    # stride >= 2 * align, and when stride == align, num_steps == ceil(span / align) makes the bound exact.
    denom = num_steps * align
    return [align * (-(-k * span // denom)) for k in range(num_steps + 1)]


def plan_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[Tile]:
    """Row-major tiles covering an (height, width) image; the product of `tile_starts` along each axis."""
    rows = tile_starts(height, tile, overlap, align)
    cols = tile_starts(width, tile, overlap, align)
    return [Tile(top, left, min(tile, height - top), min(tile, width - left)) for top in rows for left in cols]


def _ramp(length: int, feather_start: bool, feather_end: bool, overlap: int) -> torch.Tensor:
    """(length,) float32 weights: 1, ramping linearly to (0.5 / overlap) at each feathered end."""
    weights = torch.ones(length, dtype=torch.float32)
    if overlap == 0:
        return weights
    # Pixel centres (i + 0.5) keep the ramp strictly positive and make facing ramps sum to exactly 1.
    centres = torch.arange(length, dtype=torch.float32) + 0.5
    if feather_start:
        weights = torch.minimum(weights, centres / overlap)
    if feather_end:
        weights = torch.minimum(weights, (length - centres) / overlap)
    return weights


def feather_weights(
    tile: Tile,
    height: int,
    width: int,
    overlap: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(1, 1, tile.height, tile.width) blending weights for `tile` inside a (height, width) image.

    Separable product of per-axis ramps: 1 in the interior, `(i + 0.5) / overlap` for the i-th pixel from a side
    that does not lie on the image border (capped at 1; where opposite ramps meet the smaller wins), and 1 up to
    the edge on border sides. Strictly positive everywhere. `overlap == 0` gives all ones.
    """
    if overlap < 0:
        raise ValueError(f"overlap must be non-negative, got {overlap}")
    if tile.bottom > height or tile.right > width:
        raise ValueError(f"{tile} does not fit in a {height}x{width} image")
    rows = _ramp(tile.height, tile.top > 0, tile.bottom < height, overlap)
    cols = _ramp(tile.width, tile.left > 0, tile.right < width, overlap)
    weights = rows[:, None] * cols[None, :]  # (h, w)
    return weights[None, None].to(device=device, dtype=dtype)  # (1, 1, h, w)


class TileBlender:
    """Accumulates feathered tiles into a (B, C, H, W) float32 canvas and normalises by the weight sum.

    Memory is the canvas plus a (1, 1, H, W) float32 weight sum; tiles are consumed as they arrive.
    """

    def __init__(
        self,
        batch: int,
        channels: int,
        height: int,
        width: int,
        overlap: int,
        device: torch.device | str | None = None,
    ) -> None:
        if min(batch, channels, height, width) < 1:
            raise ValueError(f"canvas dims must be positive, got {(batch, channels, height, width)}")
        if overlap < 0:
            raise ValueError(f"overlap must be non-negative, got {overlap}")
        self.height = height
        self.width = width
        self.overlap = overlap
        self.canvas = torch.zeros(batch, channels, height, width, dtype=torch.float32, device=device)
        self.weight_sum = torch.zeros(1, 1, height, width, dtype=torch.float32, device=device)

    def add(self, tile: Tile, pixels: torch.Tensor) -> None:
        """Blend `pixels` (B, C, tile.height, tile.width), any float dtype and device, into the canvas."""
        expected = (*self.canvas.shape[:2], tile.height, tile.width)
        if tuple(pixels.shape) != expected:
            raise ValueError(f"pixels for {tile} must have shape {expected}, got {tuple(pixels.shape)}")
        weights = feather_weights(tile, self.height, self.width, self.overlap, device=self.canvas.device)
        rows, cols = tile.slices()
        # Accumulate in fp32 on the canvas device whatever the model's output precision.
        self.canvas[..., rows, cols] += pixels.to(device=self.canvas.device, dtype=torch.float32) * weights
        self.weight_sum[..., rows, cols] += weights

    def result(self) -> torch.Tensor:
        """(B, C, H, W) float32 normalised blend. Raises RuntimeError if some pixel was covered by no tile."""
        uncovered = int((self.weight_sum == 0).sum())
        if uncovered:
            raise RuntimeError(f"{uncovered} of {self.height * self.width} pixels were not covered by any tile")
        return self.canvas / self.weight_sum


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile: int,
    overlap: int,
    align: int = 1,
    progress: Callable[[], object] | None = None,
) -> torch.Tensor:
    """Apply a same-size map `fn` tile by tile to `image` (B, C, H, W) and blend the results.

    `fn` takes a (B, C, h, w) crop and returns (B, C', h, w) in any float dtype; the output is (B, C', H, W)
    float32 on `image.device`. `progress()`, if given, is called once per finished tile (e.g. `bar.update`).
    Gradients are not disabled here; wrap the call in `torch.no_grad()` for inference.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got shape {tuple(image.shape)}")
    batch, _, height, width = image.shape
    blender = None
    for t in plan_tiles(height, width, tile, overlap, align):
        rows, cols = t.slices()
        out = fn(image[..., rows, cols])
        if blender is None:  # C' is only known once fn has run
            blender = TileBlender(batch, out.shape[1], height, width, overlap, device=image.device)
        blender.add(t, out)
        if progress is not None:
            progress()
    return blender.result()
