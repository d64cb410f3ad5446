"""SuperResolver: per-tile bicubic, tiled vs untiled, seams, and the Python API on real photos."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from strsr.inference.pipeline import SuperResolver, padded_source, upsampled_tile
from strsr.inference.tiling import plan_tiles

OVERLAP = 16


def _photo(height=40, width=56):
    """A crop of a real photograph, (1, 3, h, w) in [0, 1]."""
    rgb = data.astronaut()[100 : 100 + height, 180 : 180 + width]
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def _resolver(tile, seed=0):
    return SuperResolver.from_preset("tiny", tile=tile, overlap=OVERLAP, seed=seed)


def test_tile_bicubic_equals_the_padded_full_bicubic_bit_for_bit():
    lr = _photo(37, 53)  # x4 = 148 x 212, reflect-padded to 160 x 224: tiles reach into the padding
    full = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    padded = F.pad(full, (0, 12, 0, 12), mode="reflect")
    for tile in plan_tiles(160, 224, 64, 12):
        rows, cols = tile.slices()
        assert torch.equal(upsampled_tile(lr, tile, 160, 224), padded[..., rows, cols])


def test_padding_reflects_like_f_pad_and_replicates_where_reflect_cannot():
    for length, padded in ((5, 8), (13, 16), (148, 160), (16, 16)):
        x = torch.arange(length, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 1, length, -1)
        want = F.pad(x, (0, padded - length, 0, 0), mode="reflect")[0, 0, 0].long()
        assert torch.equal(padded_source(length, padded), want)
    assert padded_source(4, 16).tolist() == [0, 1, 2, 3] + [3] * 12  # a pad of 12 on 4 pixels: replicate


def test_zero_velocity_model_returns_bicubic_tiled_and_untiled():
    lr = _photo()
    expected = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    for tile in (64, 1024):
        resolver = _resolver(tile)
        with torch.no_grad():
            resolver.model.diffusers_transformer.proj_out.weight.zero_()
        torch.testing.assert_close(resolver.upscale_tensor(lr), expected, rtol=0, atol=1e-5)


def test_tiled_equals_untiled_away_from_seams_for_a_local_model():
    """With a local velocity (a 3x3 conv on the state), only pixels near tile seams may differ."""
    lr = _photo()
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(192, 192, 3, padding=1, padding_mode="replicate")
    tiled, untiled = _resolver(64), _resolver(1024)
    for r in (tiled, untiled):
        r.model.velocity = lambda state, condition: conv(state) * 0.1
    a, b = tiled.upscale_tensor(lr), untiled.upscale_tensor(lr)
    assert (a - b).abs().max() > 1e-4  # tiles do see different context near seams
    # the conv reaches one state pixel (8 image px) beyond a tile edge
    margin = 8 + OVERLAP
    far = torch.ones(a.shape[-2:], dtype=torch.bool)
    for t in plan_tiles(160, 224, 64, OVERLAP):
        for edge, is_border in ((t.top, t.top == 0), (t.bottom, t.bottom == 160)):
            if not is_border:
                far[max(edge - margin, 0) : edge + margin, :] = False
        for edge, is_border in ((t.left, t.left == 0), (t.right, t.right == 224)):
            if not is_border:
                far[:, max(edge - margin, 0) : edge + margin] = False
    assert far.sum() > 0
    torch.testing.assert_close(a[..., far], b[..., far], rtol=0, atol=1e-5)


def _seam_steps(overlap):
    """Column-to-column jumps at tile seams, relative to the image's median jump, for a model whose output
    depends on the whole tile (a velocity from the tile's mean state, like global attention but smooth)."""
    resolver = SuperResolver.from_preset("tiny", tile=64, overlap=overlap)
    resolver.model.velocity = lambda state, condition: state.mean(dim=(2, 3), keepdim=True).expand_as(state)
    out = resolver.upscale_tensor(_photo())[0]
    step_x = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(0, 1))
    tiles = plan_tiles(160, 224, 64, overlap)
    seams = sorted({t.left for t in tiles if t.left} | {t.right for t in tiles if t.right < 224})
    return torch.stack([step_x[s - 1] for s in seams]) / step_x.median()


def test_feathering_hides_seams_between_disagreeing_tiles():
    assert _seam_steps(OVERLAP).max() < 3.0
    assert _seam_steps(0).max() > 3.0  # the same model with hard seams fails the bound: the check has teeth


def test_pil_api_handles_grayscale_and_alpha():
    resolver = _resolver(1024)
    gray = Image.fromarray(data.camera()[200:232, 200:240])
    out = resolver(gray)
    assert out.mode == "L" and out.size == (160, 128)
    rgba = Image.fromarray(np.dstack([data.astronaut()[:24, :32], np.full((24, 32), 200, np.uint8)]))
    out = resolver(rgba)
    assert out.mode == "RGBA" and out.size == (128, 96)
    assert np.abs(np.asarray(out)[..., 3].astype(int) - 200).max() <= 1  # constant alpha stays constant


def test_tensor_api_shapes_and_errors():
    resolver = _resolver(1024)
    assert resolver(torch.rand(3, 8, 12)).shape == (3, 32, 48)
    assert resolver(torch.rand(2, 3, 8, 12)).shape == (2, 3, 32, 48)
    with pytest.raises(ValueError, match=r"\(B, 3, h, w\)"):
        resolver.upscale_tensor(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="multiple of 8"):
        SuperResolver(resolver.model, tile=100)


def test_tiny_inputs_are_padded_and_cropped():
    resolver = _resolver(1024)
    out = resolver.upscale_tensor(torch.rand(1, 3, 1, 3))
    assert out.shape == (1, 3, 4, 12) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"overlap 1024 must be in \[0, tile\)"):
        SuperResolver(resolver.model, tile=1024, overlap=1024)


def test_upscale_image_writes_the_blend_row_block_by_row_block():
    """Samples quantised band by band (several tile rows, grey, alpha, 16-bit) equal quantising the whole blend."""
    from strsr.io.images import LoadedImage, quantize

    resolver = SuperResolver.from_preset("tiny", tile=32, overlap=8)
    lr = _photo(30, 20)[0]  # 120 x 80 output: 5 tile rows
    whole = resolver.upscale_tensor(lr[None])[0]
    alpha = torch.rand(1, 30, 20, generator=torch.Generator().manual_seed(0))
    rgba = resolver.upscale_image(LoadedImage(lr, alpha, 8, False, "x")).samples
    assert rgba.shape == (120, 80, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., :3], quantize(whole.permute(1, 2, 0).numpy(), 8))
    up_alpha = F.interpolate(alpha[None], scale_factor=4, mode="bicubic", align_corners=False)[0, 0].clamp(0, 1)
    assert np.array_equal(rgba[..., 3], quantize(up_alpha.numpy(), 8))
    grey = resolver.upscale_image(LoadedImage(lr, None, 16, True, "x"), rounding="nearest").samples
    assert grey.shape == (120, 80, 1) and grey.dtype == np.uint16
    assert np.array_equal(grey[..., 0], quantize(whole.mean(0).numpy(), 16, "nearest"))
    assert resolver.upscale_image(LoadedImage(lr, alpha, 8, False, "x"), alpha=False).samples.shape[-1] == 3


def test_too_large_and_non_finite_inputs_are_refused(tmp_path, monkeypatch):
    import strsr.inference.pipeline as pipeline
    from strsr.io.images import ImageReadError, load_image

    resolver = _resolver(1024)
    monkeypatch.setattr(pipeline, "MAX_OUTPUT_PIXELS", 64 * 64)
    with pytest.raises(ValueError, match=r"upscales to 68x64 = 4,352 pixels, above strsr's limit of 4,096"):
        resolver.upscale_tensor(torch.rand(1, 3, 16, 17))
    bad = torch.rand(1, 3, 8, 8)
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        resolver.upscale_tensor(bad)
    Image.fromarray(data.astronaut()[:40, :50]).save(tmp_path / "a.png")
    with pytest.raises(ImageReadError, match=r"50x40 is too large \(over 1,999 pixels\)"):
        load_image(tmp_path / "a.png", max_pixels=1999)
