"""Tests for strsr.tiling: window placement, feather weights, blending and run_tiled parity."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from strsr.tiling import Tile, TileBlender, feather_weights, plan_tiles, run_tiled, tile_starts

# (length, tile, overlap, align): primes, non-powers-of-two, exact fits, one-pixel spill, the pipeline defaults.
AXIS_CASES = [
    (97, 32, 8, 1),
    (131, 48, 16, 4),
    (131, 128, 32, 4),
    (100, 40, 12, 4),
    (257, 64, 0, 1),
    (96, 32, 8, 8),
    (97, 96, 32, 4),
    (200, 36, 33, 3),
    (4000, 1024, 64, 4),
    (4099, 1024, 64, 4),
]


def greedy_num_windows(length: int, tile: int, overlap: int) -> int:
    """Reference count: step by tile - overlap from 0 until a window reaches the end (optimal for the constraints)."""
    start, count = 0, 1
    while start + tile < length:
        start += tile - overlap
        count += 1
    return count


def check_axis(length: int, tile: int, overlap: int, align: int) -> None:
    starts = tile_starts(length, tile, overlap, align)
    size = min(tile, length)
    ends = [min(s + size, length) for s in starts]
    assert starts[0] == 0
    assert all(s % align == 0 for s in starts)
    assert all(b > a for a, b in zip(starts, starts[1:])), starts
    assert ends[-1] == length
    assert all(e - s_next >= overlap for e, s_next in zip(ends, starts[1:])), (starts, ends)
    # Only the last window may be clipped, and by less than align.
    assert all(s + size <= length for s in starts[:-1])
    assert length - starts[-1] > size - align
    covered = torch.zeros(length, dtype=torch.bool)
    for s, e in zip(starts, ends):
        covered[s:e] = True
    assert covered.all()
    assert len(starts) == greedy_num_windows(length, tile, overlap)


@pytest.mark.parametrize("length, tile, overlap, align", AXIS_CASES)
def test_tile_starts_properties(length, tile, overlap, align):
    check_axis(length, tile, overlap, align)


def test_tile_starts_sweep():
    for align in (1, 3, 4):
        for tile in range(align, 10 * align + 1, align):
            for overlap in range(0, tile, align):
                for length in range(1, 3 * tile + 7):
                    check_axis(length, tile, overlap, align)


def test_tile_starts_known_values():
    assert tile_starts(97, 128, 32, 4) == [0]
    assert tile_starts(128, 128, 32, 4) == [0]
    assert tile_starts(224, 128, 32, 1) == [0, 96]  # exact fit: overlap is exactly 32
    assert tile_starts(10, 4, 0, 1) == [0, 3, 6]  # surplus overlap spread over both seams
    assert tile_starts(131, 128, 32, 4) == [0, 4]  # 131 - 128 = 3 rounds up to 4: last window is 127 wide


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length=10, tile=0, overlap=0), "tile must be positive"),
        (dict(length=10, tile=8, overlap=-1), "overlap"),
        (dict(length=10, tile=8, overlap=8), "overlap"),
        (dict(length=10, tile=8, overlap=2, align=0), "align"),
        (dict(length=10, tile=10, overlap=4, align=4), "multiples of align"),
        (dict(length=10, tile=8, overlap=2, align=4), "multiples of align"),
        (dict(length=0, tile=8, overlap=2), "length"),
    ],
)
def test_tile_starts_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tile_starts(**kwargs)
    if kwargs["length"] > 0:
        with pytest.raises(ValueError, match=match):
            plan_tiles(kwargs["length"], kwargs["length"], kwargs["tile"], kwargs["overlap"], kwargs.get("align", 1))


@pytest.mark.parametrize("height, width, tile, overlap, align", [(97, 131, 48, 16, 4), (64, 200, 32, 8, 1)])
def test_plan_tiles_grid(height, width, tile, overlap, align):
    tiles = plan_tiles(height, width, tile, overlap, align)
    rows = tile_starts(height, tile, overlap, align)
    cols = tile_starts(width, tile, overlap, align)
    assert [(t.top, t.left) for t in tiles] == list(itertools.product(rows, cols))  # row-major
    count = torch.zeros(height, width, dtype=torch.int64)
    for t in tiles:
        assert t.bottom <= height and t.right <= width
        assert t.height <= tile and t.width <= tile
        count[t.slices()] += 1
    assert (count >= 1).all()


def test_plan_tiles_single_tile_when_image_smaller():
    assert plan_tiles(97, 131, 1024, 64, 4) == [Tile(0, 0, 97, 131)]


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
    ramp = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap  # independent reference
    mid_row, mid_col = 20, 25
    torch.testing.assert_close(w[mid_row, :overlap].double(), ramp, atol=1e-6, rtol=0)
    torch.testing.assert_close(w[mid_row, -overlap:].double(), ramp.flip(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(w[:overlap, mid_col].double(), ramp, atol=1e-6, rtol=0)
    torch.testing.assert_close(w[-overlap:, mid_col].double(), ramp.flip(0), atol=1e-6, rtol=0)
    assert (w[overlap:-overlap, overlap:-overlap] == 1).all()
    assert (w > 0).all()

    corner = Tile(0, 0, 40, 50)  # top and left on the image border
    wc = feather_weights(corner, height, width, overlap)[0, 0]
    assert (wc[0, : 50 - overlap] == 1).all() and (wc[: 40 - overlap, 0] == 1).all()
    assert (torch.diff(wc[0, -overlap:]) < 0).all()  # ramps down towards the interior right side
    assert (torch.diff(wc[-overlap:, 0]) < 0).all()
    assert (wc > 0).all()

    whole = Tile(0, 0, height, width)
    assert (feather_weights(whole, height, width, overlap) == 1).all()


def test_feather_weights_narrow_tile_positive():
    # Ramps from both sides meet when the tile is narrower than 2 * overlap; weights must stay positive.
    w = feather_weights(Tile(10, 10, 12, 5), 40, 40, overlap=8, dtype=torch.float16)
    assert w.shape == (1, 1, 12, 5) and w.dtype == torch.float16
    assert (w > 0).all()


def test_feather_weights_partition_of_unity():
    # When every actual overlap equals `overlap`, the weights sum to exactly 1 (linear partition of unity).
    tile, overlap = 32, 8
    height, width = 3 * tile - 2 * overlap, 2 * tile - overlap
    total = torch.zeros(height, width, dtype=torch.float64)
    for t in plan_tiles(height, width, tile, overlap):
        total[t.slices()] += feather_weights(t, height, width, overlap, dtype=torch.float64)[0, 0]
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-12, rtol=0)


IMAGE_CASES = [
    (97, 131, 48, 16, 4),
    (131, 131, 64, 8, 1),
    (64, 200, 32, 8, 8),
    (257, 33, 40, 20, 2),
    (50, 70, 128, 64, 4),
    (61, 89, 24, 0, 1),
]


@pytest.mark.parametrize("height, width, tile, overlap, align", IMAGE_CASES)
def test_run_tiled_identity(height, width, tile, overlap, align):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, height, width, generator=gen)
    calls = []
    out = run_tiled(lambda x: x, image, tile, overlap, align, progress=lambda: calls.append(1))
    assert out.shape == image.shape and out.dtype == torch.float32
    assert (out - image).abs().max() < 1e-6
    assert len(calls) == len(plan_tiles(height, width, tile, overlap, align))


@pytest.mark.parametrize("height, width, tile, overlap, align", IMAGE_CASES)
def test_run_tiled_pointwise_matches_untiled(height, width, tile, overlap, align):
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(1, 2, height, width, generator=gen)

    def fn(x):
        return torch.sigmoid(3 * x) + torch.sin(x) ** 2

    out = run_tiled(fn, image, tile, overlap, align)
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


@pytest.mark.parametrize("height, width, tile, overlap, align", IMAGE_CASES)
def test_run_tiled_conv_matches_untiled_away_from_tile_borders(height, width, tile, overlap, align):
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(2, 3, height, width, generator=gen)
    kernel = torch.randn(4, 3, 3, 3, generator=gen)  # channel count changes 3 -> 4

    def conv(x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)

    out = run_tiled(conv, image, tile, overlap, align)
    ref = conv(image)
    assert out.shape == ref.shape
    keep = ~border_band_mask(height, width, plan_tiles(height, width, tile, overlap, align), radius=1)
    assert keep.float().mean() > 0.5  # the comparison covers most of the image
    assert (out - ref)[..., keep].abs().max() < 1e-5


@pytest.mark.parametrize("height, width, tile, overlap, align", [(97, 131, 48, 16, 4), (120, 90, 40, 8, 1)])
def test_no_visible_seams_with_tile_dependent_offsets(height, width, tile, overlap, align):
    tiles = plan_tiles(height, width, tile, overlap, align)
    rows = tile_starts(height, tile, overlap, align)
    cols = tile_starts(width, tile, overlap, align)
    # Checkerboard offsets: every pair of neighbouring tiles differs by 1, so a hard seam would jump by 1.
    offsets = [float((i + j) % 2) for i, j in itertools.product(range(len(rows)), range(len(cols)))]
    calls = iter(offsets)

    def offset_fn(x):
        return x + next(calls)

    out = run_tiled(offset_fn, torch.zeros(1, 1, height, width), tile, overlap, align)[0, 0]
    # Linear feathering changes the normalised weights by at most ~1/overlap per pixel; 1.5x leaves rounding slack.
    bound = 1.0 / overlap * 1.5
    assert torch.diff(out, dim=1).abs().max() <= bound
    assert torch.diff(out, dim=0).abs().max() <= bound
    # Not vacuous: the output really moves between the offsets, and pixels seen by one tile keep its offset.
    assert out.max() - out.min() > 0.9
    count = torch.zeros(height, width, dtype=torch.int64)
    for t in tiles:
        count[t.slices()] += 1
    for t, offset in zip(tiles, offsets):
        own = count[t.slices()] == 1
        assert torch.where(own, out[t.slices()] - offset, 0.0).abs().max() < 1e-6


def test_blender_raises_on_uncovered_pixels():
    blender = TileBlender(1, 3, 16, 16, overlap=4)
    blender.add(Tile(0, 0, 16, 10), torch.ones(1, 3, 16, 10))
    with pytest.raises(RuntimeError, match="not covered"):
        blender.result()
    blender.add(Tile(0, 8, 16, 8), torch.ones(1, 3, 16, 8))
    assert torch.equal(blender.result(), torch.ones(1, 3, 16, 16))


def test_blender_accepts_half_precision_and_checks_shape():
    blender = TileBlender(2, 1, 8, 8, overlap=0)
    tile = Tile(0, 0, 8, 8)
    pixels = torch.full((2, 1, 8, 8), 0.5, dtype=torch.float16)
    with pytest.raises(ValueError, match="shape"):
        blender.add(tile, pixels[:, :, :7])
    blender.add(tile, pixels)
    out = blender.result()
    assert out.dtype == torch.float32 and (out == 0.5).all()


@pytest.fixture
def cuda_device():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch.device("cuda")


@pytest.mark.gpu
def test_run_tiled_identity_cuda(cuda_device):
    image = torch.rand(1, 3, 97, 131, generator=torch.Generator().manual_seed(3)).to(cuda_device)
    out = run_tiled(lambda x: x.half(), image, tile=48, overlap=16, align=4)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert (out - image).abs().max() < 1e-3  # fp16 tiles: one half-precision rounding of values in [0, 1]
