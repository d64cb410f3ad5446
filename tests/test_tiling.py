"""Tests for strsr.inference.tiling: the official window placement, its feather weights, blending and run_tiled parity.
(tests/test_official_parity.py compares the plan and every weight map with the official code written out.)"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from strsr.inference.tiling import Tile, blend_tiles, feather_weights, plan_tiles, run_tiled, tile_starts

# (length, tile, overlap): primes, non-powers-of-two, exact fits, one-pixel spill, the official defaults.
AXIS_CASES = [
    (97, 32, 8),
    (131, 48, 16),
    (131, 128, 32),
    (100, 40, 12),
    (257, 64, 0),
    (97, 96, 32),
    (200, 36, 33),
    (4000, 1024, 64),
    (4099, 1024, 64),
]


def official_count(length: int, tile: int, overlap: int) -> int:
    """Windows the official plan uses: one per stride that fits a whole tile, plus one flush with the end."""
    if length <= tile:
        return 1
    stride = tile - overlap
    steps = (length - tile) // stride + 1
    return steps + ((length - tile) % stride != 0)


def check_axis(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    ends = [s + size for s in starts]
    assert starts[0] == 0 and ends[-1] == length and all(e <= length for e in ends)
    assert all(b > a for a, b in zip(starts, starts[1:])), starts
    assert all(e - s_next >= overlap for e, s_next in zip(ends, starts[1:])), (starts, ends)
    # every start but the last is a whole number of strides from 0
    assert all(s == k * (tile - overlap) for k, s in enumerate(starts[:-1]))
    assert len(starts) == official_count(length, tile, overlap)


@pytest.mark.parametrize("length, tile, overlap", AXIS_CASES)
def test_tile_starts_properties(length, tile, overlap):
    check_axis(length, tile, overlap)


def test_tile_starts_sweep():
    for tile in range(1, 25):
        for overlap in range(0, tile):
            for length in range(1, 3 * tile + 7):
                check_axis(length, tile, overlap)


def test_tile_starts_known_values():
    assert tile_starts(97, 128, 32) == [0]
    assert tile_starts(128, 128, 32) == [0]
    assert tile_starts(129, 128, 32) == [0, 1]  # the last tile shifts back to end flush: 127 px of overlap
    assert tile_starts(224, 128, 32) == [0, 96]  # exact fit: overlap is exactly 32
    assert tile_starts(100, 48, 12) == [0, 36, 52]
    assert tile_starts(1984, 1024, 64) == [0, 960]
    assert tile_starts(4000, 1024, 64) == [0, 960, 1920, 2880, 2976]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length=10, tile=0, overlap=0), "tile must be positive"),
        (dict(length=10, tile=8, overlap=-1), "overlap"),
        (dict(length=10, tile=8, overlap=8), "overlap"),
        (dict(length=0, tile=8, overlap=2), "length"),
    ],
)
def test_tile_starts_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tile_starts(**kwargs)
    if kwargs["length"] > 0:
        with pytest.raises(ValueError, match=match):
            plan_tiles(kwargs["length"], kwargs["length"], kwargs["tile"], kwargs["overlap"])


@pytest.mark.parametrize("height, width, tile, overlap", [(97, 131, 48, 16), (64, 200, 32, 8)])
def test_plan_tiles_grid(height, width, tile, overlap):
    tiles = plan_tiles(height, width, tile, overlap)
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    assert [(t.top, t.left) for t in tiles] == list(itertools.product(rows, cols))  # row-major
    count = torch.zeros(height, width, dtype=torch.int64)
    for t in tiles:
        assert t.bottom <= height and t.right <= width
        assert (t.height, t.width) == (min(tile, height), min(tile, width))
        count[t.slices()] += 1
    assert (count >= 1).all()


def test_plan_tiles_single_tile_when_image_smaller():
    assert plan_tiles(97, 131, 1024, 64) == [Tile(0, 0, 97, 131)]


def test_tile_geometry():
    t = Tile(top=3, left=5, height=7, width=11)
    assert (t.bottom, t.right) == (10, 16)
    x = torch.arange(20 * 20).reshape(1, 1, 20, 20)
    rows, cols = t.slices()
    assert torch.equal(x[..., rows, cols], x[..., 3:10, 5:16])
    with pytest.raises(ValueError):
        Tile(0, 0, 0, 4)


def test_feather_weights_sides():
    overlap = 8
    height, width = 100, 90
    middle = Tile(30, 20, 40, 50)  # interior on all four sides
    w = feather_weights(middle, height, width, overlap)[0, 0]
    assert w.shape == (40, 50) and w.dtype == torch.float32
    ramp = torch.arange(overlap, dtype=torch.float64) / (overlap - 1)  # 0 .. 1 inclusive: linspace's end points
    mid_row, mid_col = 20, 25
    torch.testing.assert_close(w[mid_row, :overlap].double(), ramp, atol=1e-6, rtol=0)
    torch.testing.assert_close(w[mid_row, -overlap:].double(), ramp.flip(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(w[:overlap, mid_col].double(), ramp, atol=1e-6, rtol=0)
    torch.testing.assert_close(w[-overlap:, mid_col].double(), ramp.flip(0), atol=1e-6, rtol=0)
    assert (w[overlap:-overlap, overlap:-overlap] == 1).all()
    corner = Tile(0, 0, 40, 50)  # top and left on the image border: no ramp there
    wc = feather_weights(corner, height, width, overlap)[0, 0]
    assert (wc[0, : 50 - overlap] == 1).all() and (wc[: 40 - overlap, 0] == 1).all()
    assert wc[0, -1] == 0 and wc[-1, 0] == 0  # a facing side's last pixel is its neighbour's alone
    assert (feather_weights(Tile(0, 0, height, width), height, width, overlap) == 1).all()
    assert (feather_weights(middle, height, width, 0) == 1).all()  # overlap 0: tiles abut


def test_feather_weights_partition_of_unity():
    # Where neighbours are exactly `overlap` apart, facing ramps sum to 1 (linspace(0,1) + linspace(1,0)).
    tile, overlap = 32, 8
    height, width = 3 * tile - 2 * overlap, 2 * tile - overlap
    total = torch.zeros(height, width, dtype=torch.float64)
    for t in plan_tiles(height, width, tile, overlap):
        total[t.slices()] += feather_weights(t, height, width, overlap)[0, 0].double()
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)


IMAGE_CASES = [(97, 131, 48, 16), (131, 131, 64, 8), (64, 200, 32, 8), (257, 33, 40, 20), (50, 70, 128, 64),
               (61, 89, 24, 0)]  # fmt: skip


def _crops(image: torch.Tensor, fn=lambda x: x):
    return lambda t: fn(image[..., t.slices()[0], t.slices()[1]])


@pytest.mark.parametrize("height, width, tile, overlap", IMAGE_CASES)
def test_run_tiled_identity(height, width, tile, overlap):
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    calls = []
    out = run_tiled(_crops(image), 2, 3, height, width, tile, overlap, progress=calls.append)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert (out - image).abs().max() < 1e-6
    assert calls == [len(plan_tiles(height, width, tile, overlap))] + [None] * (len(calls) - 1) and len(calls) > 1


@pytest.mark.parametrize("height, width, tile, overlap", IMAGE_CASES)
def test_run_tiled_pointwise_matches_untiled(height, width, tile, overlap):
    image = torch.randn(1, 2, height, width, generator=torch.Generator().manual_seed(1))

    def fn(x):
        return torch.sigmoid(3 * x) + torch.sin(x) ** 2

    out = run_tiled(_crops(image, fn), 1, 2, height, width, tile, overlap)
    assert (out - fn(image)).abs().max() < 1e-5


def border_band_mask(height: int, width: int, tiles: list[Tile], radius: int) -> torch.Tensor:
    """(H, W) bool: pixels within `radius` inside some tile of one of its edges that is not an image edge."""
    band = torch.zeros(height, width, dtype=torch.bool)
    for t in tiles:
        if t.top > 0:
            band[t.top : t.top + radius, t.left : t.right] = True
        if t.bottom < height:
            band[t.bottom - radius : t.bottom, t.left : t.right] = True
        if t.left > 0:
            band[t.top : t.bottom, t.left : t.left + radius] = True
        if t.right < width:
            band[t.top : t.bottom, t.right - radius : t.right] = True
    return band


@pytest.mark.parametrize("height, width, tile, overlap", IMAGE_CASES)
def test_run_tiled_conv_matches_untiled_away_from_tile_borders(height, width, tile, overlap):
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(2, 3, height, width, generator=gen)
    kernel = torch.randn(4, 3, 3, 3, generator=gen)  # channel count changes 3 -> 4

    def conv(x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)

    out = run_tiled(_crops(image, conv), 2, 4, height, width, tile, overlap)
    ref = conv(image)
    keep = ~border_band_mask(height, width, plan_tiles(height, width, tile, overlap), radius=1)
    assert keep.float().mean() > 0.5  # the comparison covers most of the image
    assert (out - ref)[..., keep].abs().max() < 1e-5


@pytest.mark.parametrize("height, width, tile, overlap", [(97, 131, 48, 16), (120, 90, 40, 8)])
def test_no_visible_seams_with_tile_dependent_offsets(height, width, tile, overlap):
    tiles = plan_tiles(height, width, tile, overlap)
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    # Checkerboard offsets: every pair of neighbouring tiles differs by 1, so a hard seam would jump by 1.
    offsets = {(t.top, t.left): float((i + j) % 2) for t, (i, j) in
               zip(tiles, itertools.product(range(len(rows)), range(len(cols))))}  # fmt: skip
    out = run_tiled(lambda t: torch.full((1, 1, t.height, t.width), offsets[t.top, t.left]), 1, 1, height, width,
                    tile, overlap)[0, 0]  # fmt: skip
    # The ramps step by 1 / (overlap - 1) per pixel; 1.5x leaves room for the normalisation.
    bound = 1.5 / (overlap - 1)
    assert torch.diff(out, dim=1).abs().max() <= bound
    assert torch.diff(out, dim=0).abs().max() <= bound
    # Not vacuous: the output really moves between the offsets, and pixels seen by one tile keep its offset.
    assert out.max() - out.min() > 0.9
    count = torch.zeros(height, width, dtype=torch.int64)
    for t in tiles:
        count[t.slices()] += 1
    for t in tiles:
        own = count[t.slices()] == 1
        assert torch.where(own, out[t.slices()] - offsets[t.top, t.left], 0.0).abs().max() < 1e-6


def test_blend_divides_by_the_floored_weight_sum_and_checks_shapes():
    ones = run_tiled(lambda t: torch.ones(1, 3, t.height, t.width), 1, 3, 16, 40, 16, 4)
    torch.testing.assert_close(ones, torch.ones(1, 3, 16, 40), rtol=0, atol=1e-6)
    half = run_tiled(lambda t: torch.full((2, 1, t.height, t.width), 0.5, dtype=torch.float16), 2, 1, 8, 8, 8, 0)
    assert half.dtype == torch.float32 and (half == 0.5).all()
    with pytest.raises(ValueError, match="shape"):
        run_tiled(lambda t: torch.ones(1, 3, t.height - 1, t.width), 1, 3, 16, 16, 8, 2)


def test_finished_rows_stream_out_before_later_tiles_are_made():
    """Memory is one band: each row of tiles is released (yielded) before the next row's tiles are produced, and
    the streamed blocks put together equal a whole-canvas blend of the same tiles."""
    height, width, tile, overlap = 200, 70, 48, 12
    image = torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(4))
    made = []

    def produce(t):
        made.append(t)
        return torch.sin(5 * image[..., t.slices()[0], t.slices()[1]]) + t.top / 100  # tile-dependent
    blocks = []
    for top, rows in blend_tiles(produce, 1, 2, height, width, tile, overlap):
        assert rows.shape[2] <= tile and rows.shape[-1] == width
        assert all(t.top <= top + rows.shape[2] + tile for t in made)  # no tile far below the block was made
        blocks.append((top, rows))
    assert [top for top, _ in blocks] == tile_starts(height, tile, overlap)
    canvas, weight = torch.zeros(1, 2, height, width), torch.zeros(1, 1, height, width)
    for t in plan_tiles(height, width, tile, overlap):  # the whole-image reference, in plan order
        w = feather_weights(t, height, width, overlap)
        canvas[..., t.slices()[0], t.slices()[1]] += produce(t) * w
        weight[..., t.slices()[0], t.slices()[1]] += w
    assert torch.equal(torch.cat([rows for _, rows in blocks], dim=2), canvas / weight.clamp_min(1e-6))


@pytest.mark.gpu
def test_run_tiled_identity_from_cuda_tiles():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    image = torch.rand(1, 3, 97, 131, generator=torch.Generator().manual_seed(3)).cuda()
    out = run_tiled(_crops(image, lambda x: x.half()), 1, 3, 97, 131, 48, 16)
    assert out.device.type == "cpu" and out.dtype == torch.float32
    assert (out - image.cpu()).abs().max() < 1e-3  # fp16 tiles: one half-precision rounding of values in [0, 1]
