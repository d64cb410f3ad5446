"""RealESRGAN degradation: kernels against their formulas, noise statistics, JPEG against BasicSR's DiffJPEG written
out in numpy (and near PIL), USM against a scipy reference, the ragged-batch canvas against per-sample processing,
the generator's input against the official rounding, the pair queue, and pipeline-level properties."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from strsr.degradation.blur_kernels import (
    gaussian_kernels,
    generalized_gaussian_kernels,
    plateau_kernels,
    random_final_sinc_kernels,
    random_kernels,
    sinc_kernels,
)
from strsr.degradation.jpeg import jpeg_compress, quality_factor
from strsr.degradation.realesrgan import (
    DegradationConfig,
    DegradedPair,
    PairQueue,
    RealESRGANDegradation,
    _filter_ragged,
    _jpeg_ragged,
    _pack,
    _unpack,
    filter2d,
    gaussian_noise,
    model_input,
    poisson_noise,
    upsample_lr,
    usm_sharpen,
)

PHOTOS = ("astronaut", "coffee", "chelsea")


def _photo(name: str, size: int = 128) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1]: the top-left crop of a scikit-image photo."""
    from skimage import data

    array = np.ascontiguousarray(getattr(data, name)()[:size, :size])
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.stack([_photo(name) for name in PHOTOS])  # (3, 3, 128, 128)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _high_freq(images: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared 4-neighbour Laplacian: the energy of the finest detail."""
    c = images[..., 1:-1, 1:-1]
    lap = 4 * c - images[..., :-2, 1:-1] - images[..., 2:, 1:-1] - images[..., 1:-1, :-2] - images[..., 1:-1, 2:]
    return lap.pow(2).mean(dim=(1, 2, 3))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1 / (a - b).pow(2).mean(dim=(1, 2, 3)))


def _grid(size: int = 21) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(size) - size // 2
    return np.meshgrid(ax, ax)  # x along columns, y along rows


def _quadratic(sx: float, sy: float, theta: float, size: int = 21) -> np.ndarray:
    """[x, y] Sigma^-1 [x, y]^T with Sigma built and inverted by numpy (independent of the torch closed form)."""
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(rot @ np.diag([sx**2, sy**2]) @ rot.T)
    xy = np.stack(_grid(size), -1).astype(np.float64)
    return np.einsum("...i,ij,...j->...", xy, inv, xy)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ pipeline


def test_same_seed_same_pair_and_global_rng_unused(photos):
    deg = RealESRGANDegradation()
    torch.manual_seed(1)
    first = deg(photos, _gen(7))
    torch.manual_seed(2)  # a different global RNG state must not matter
    torch.rand(10)
    second = deg(photos, _gen(7))
    assert torch.equal(first.lr, second.lr) and torch.equal(first.hr, second.hr)
    other = deg(photos, _gen(8))
    assert not torch.equal(first.lr, other.lr)


@pytest.mark.parametrize("seed", range(4))
def test_output_sizes_range_and_quantisation(photos, seed):
    pair = RealESRGANDegradation()(photos, _gen(seed))
    assert pair.lr_raw.shape == (3, 3, 32, 32) and pair.hr.shape == photos.shape
    assert pair.lr_raw.dtype == pair.hr.dtype == torch.float32
    assert pair.hr.min() >= 0 and pair.hr.max() <= 1
    # the raw LR is left as the last filter made it (the official `low_LQ`): not on the 8-bit grid
    off_grid = ((pair.lr_raw * 255) - (pair.lr_raw * 255).round()).abs() > 1e-3
    assert off_grid.float().mean() > 0.5
    # `lr` is the 8-bit image of it
    assert pair.lr.min() >= 0 and pair.lr.max() <= 1
    torch.testing.assert_close(pair.lr, torch.clamp((pair.lr_raw * 255).round(), 0, 255) / 255, atol=0, rtol=0)


def test_model_input_rounds_after_the_bicubic_upsampling_as_the_official_trainer():
    """Official: LQ = clamp(round(bicubic(low_LQ, GT size) * 255), 0, 255) / 255; rounding first would differ."""
    lr_raw = torch.rand(2, 3, 8, 10, generator=_gen(0)) * 1.2 - 0.1  # strays outside [0, 1] like a sinc output
    got = model_input(lr_raw, (32, 40))
    up = F.interpolate(lr_raw, size=(32, 40), mode="bicubic", align_corners=False)
    torch.testing.assert_close(got, torch.clamp((up * 255.0).round(), 0, 255) / 255.0, atol=0, rtol=0)
    rounded_first = upsample_lr(torch.clamp((lr_raw * 255).round(), 0, 255) / 255, (32, 40))
    assert (got - rounded_first).abs().max() > 1 / 255


def test_non_square_input_and_plain_gt():
    hr = torch.stack([_photo(name)[:, :96, :] for name in PHOTOS[:2]])  # (2, 3, 96, 128)
    pair = RealESRGANDegradation(DegradationConfig(sharpen_gt=False))(hr, _gen(0))
    assert pair.lr_raw.shape == (2, 3, 24, 32)
    assert torch.equal(pair.hr, hr)


def test_small_input_runs():
    # 32 px: the 0.15x first resize leaves 4 px, narrower than the 21-tap kernel's radius (edge replication)
    hr = _photo("chelsea", 32)[None].expand(4, -1, -1, -1)
    for seed in range(4):
        assert RealESRGANDegradation()(hr, _gen(seed)).lr_raw.shape == (4, 3, 8, 8)


def test_rejects_bad_inputs(photos):
    deg = RealESRGANDegradation()
    with pytest.raises(ValueError, match="multiples"):
        deg(photos[..., :126], _gen(0))
    with pytest.raises(ValueError, match="float"):
        deg((photos * 255).to(torch.uint8), _gen(0))
    with pytest.raises(TypeError, match="Generator"):
        deg(photos, 0)
    with pytest.raises(ValueError, match="kernel_probs"):
        DegradationConfig(kernel_probs=(0.5, 0.5))
    with pytest.raises(ValueError, match="gray_noise_prob"):
        DegradationConfig(gray_noise_prob=1.5)
    with pytest.raises(ValueError, match="JPEG qualities must be in"):
        DegradationConfig(jpeg_range2=(30.0, 100.0))


def test_lr_is_blurrier_than_bicubic_and_differs(photos):
    """Over 16 seeds x 3 photos the LR has less fine detail than the plain (antialiased) bicubic x4 downscale, and
    differs from it by a plausible amount. Observed (this code, CPU): high-frequency energy ratio LR / bicubic has
    geometric mean 0.60 (median 0.51; noisy samples reach 8x), 75% of pairs below 1; with noise switched off the
    geometric mean is 0.32 and 94% are below 1. PSNR(LR, bicubic) 18.1-30.5 dB, mean 24.9 dB."""
    bicubic = F.interpolate(photos, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    quiet = DegradationConfig(noise_range=(0, 0), poisson_scale_range=(0, 0), noise_range2=(0, 0),
                              poisson_scale_range2=(0, 0))  # fmt: skip
    ratios, quiet_ratios, psnrs = [], [], []
    for seed in range(16):
        lr = RealESRGANDegradation()(photos, _gen(seed)).lr
        ratios.append(_high_freq(lr) / _high_freq(bicubic))
        psnrs.append(_psnr(lr, bicubic))
        quiet_ratios.append(_high_freq(RealESRGANDegradation(quiet)(photos, _gen(seed)).lr) / _high_freq(bicubic))
    ratios, quiet_ratios, psnrs = torch.cat(ratios), torch.cat(quiet_ratios), torch.cat(psnrs)
    assert ratios.log().mean().exp() < 0.8
    assert quiet_ratios.log().mean().exp() < 0.5 and (quiet_ratios < 1).float().mean() > 0.8
    assert psnrs.min() > 15 and psnrs.max() < 35 and 20 < psnrs.mean() < 30


# ------------------------------------------------------------------------------------------------- kernels


def test_isotropic_gaussian_matches_formula():
    x, y = _grid()
    for sigma in (0.2, 1.0, 3.0):
        ref = np.exp(-(x**2 + y**2) / (2 * sigma**2))
        ref /= ref.sum()
        got = gaussian_kernels(_t(sigma), _t(sigma), _t(0.0))[0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)


def test_generalized_and_plateau_match_formulas():
    sx, sy, theta, beta = 2.5, 1.2, 0.7, 1.7
    q = _quadratic(sx, sy, theta)
    gen = np.exp(-0.5 * q**beta)
    plateau = 1 / (1 + q**beta)
    got_gen = generalized_gaussian_kernels(_t(sx), _t(sy), _t(theta), _t(beta))[0].numpy()
    got_plateau = plateau_kernels(_t(sx), _t(sy), _t(theta), _t(beta))[0].numpy()
    for row, col in ((10, 10), (10, 13), (7, 12), (3, 16), (15, 4)):
        assert got_gen[row, col] == pytest.approx(gen[row, col] / gen.sum(), abs=1e-6)
        assert got_plateau[row, col] == pytest.approx(plateau[row, col] / plateau.sum(), abs=1e-6)
    # beta = 1 is the Gaussian
    torch.testing.assert_close(
        generalized_gaussian_kernels(_t(sx), _t(sy), _t(theta), _t(1.0)), gaussian_kernels(_t(sx), _t(sy), _t(theta))
    )


def test_rotation_by_90_degrees_swaps_sigmas():
    rotated = gaussian_kernels(_t(2.5), _t(0.8), _t(math.pi / 2))
    swapped = gaussian_kernels(_t(0.8), _t(2.5), _t(0.0))
    torch.testing.assert_close(rotated, swapped, atol=1e-6, rtol=0)


def test_sinc_matches_circular_lowpass_formula():
    special = pytest.importorskip("scipy.special")
    x, y = _grid()
    r = np.hypot(x, y)
    for omega in (math.pi / 5, math.pi / 2, 3.0):
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = omega * special.j1(omega * r) / (2 * np.pi * r)
        ref[10, 10] = omega**2 / (4 * np.pi)
        ref /= ref.sum()
        np.testing.assert_allclose(sinc_kernels(_t(omega))[0].numpy(), ref, atol=1e-6, rtol=0)


def test_smaller_support_is_padded_kernel_of_that_size():
    small = gaussian_kernels(_t(2.0), _t(1.0), _t(0.3), size=7)
    padded = gaussian_kernels(_t(2.0), _t(1.0), _t(0.3), size=21, support=torch.tensor([7]))
    torch.testing.assert_close(padded, F.pad(small, (7, 7, 7, 7)), atol=1e-7, rtol=0)


def test_random_kernels_sum_to_one_and_are_point_symmetric():
    kernels = random_kernels(256, _gen(0))
    assert kernels.shape == (256, 21, 21) and kernels.dtype == torch.float32
    torch.testing.assert_close(kernels.sum(dim=(1, 2)), torch.ones(256), atol=1e-5, rtol=0)
    torch.testing.assert_close(kernels, kernels.flip(-1, -2), atol=1e-7, rtol=0)  # correlation == convolution
    assert torch.equal(kernels, random_kernels(256, _gen(0)))
    assert not torch.equal(kernels, random_kernels(256, _gen(1)))


def test_random_kernel_types_follow_probabilities():
    iso = random_kernels(64, _gen(0), kernel_probs=(1, 0, 0, 0, 0, 0), sinc_prob=0)
    torch.testing.assert_close(iso, iso.transpose(-1, -2), atol=1e-7, rtol=0)
    assert (iso >= 0).all()
    aniso = random_kernels(64, _gen(0), kernel_probs=(0, 1, 0, 0, 0, 0), sinc_prob=0)
    assert (aniso - aniso.transpose(-1, -2)).abs().amax(dim=(1, 2)).gt(1e-4).float().mean() > 0.8
    sinc = random_kernels(64, _gen(0), sinc_prob=1.0)
    torch.testing.assert_close(sinc, sinc.transpose(-1, -2), atol=1e-7, rtol=0)
    pulses = random_final_sinc_kernels(8, _gen(0), prob=0.0)
    assert (pulses[:, 10, 10] == 1).all() and pulses.sum() == 8


# --------------------------------------------------------------------------------------------------- noise


def test_gaussian_noise_has_its_sigma():
    flat = torch.full((2, 3, 128, 128), 0.5)
    noise = gaussian_noise(flat, torch.tensor([10.0, 25.0]), torch.tensor([False, True]), _gen(0))
    for i, sigma in enumerate((10.0, 25.0)):
        assert noise[i].std().item() == pytest.approx(sigma / 255, rel=0.05)
    assert torch.equal(noise[1, 0], noise[1, 2])  # gray: one field for all channels
    assert not torch.equal(noise[0, 0], noise[0, 2])


def test_poisson_noise_variance_follows_signal():
    """Var = scale^2 x / v with v = 256: the first row holds all 256 levels, as in any photo."""
    scale = 1.5
    variances = []
    for level in (0.2, 0.8):
        image = torch.full((1, 3, 200, 256), level)
        image[:, :, 0] = torch.arange(256) / 255
        noise = poisson_noise(image, torch.tensor([scale]), torch.tensor([False]), _gen(0))[:, :, 1:]
        variances.append(noise.var().item())
        assert variances[-1] == pytest.approx(scale**2 * level / 256, rel=0.05)
    assert variances[1] / variances[0] == pytest.approx(4.0, rel=0.05)


# ---------------------------------------------------------------------------------------------------- JPEG


# IJG (JPEG Annex K) tables as printed in the standard, rows = vertical frequency.
IJG_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=np.float64)  # fmt: skip
IJG_CHROMA = np.full((8, 8), 99.0)
IJG_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def _diffjpeg_reference(image: np.ndarray, quality: float) -> np.ndarray:
    """BasicSR's DiffJPEG(differentiable=False), the official StrSR codec, written out plainly in float64 with a loop
    over 8x8 blocks: zero padding to 16, JFIF YCbCr of x * 255, 2x2 mean chroma, DCT as 0.25 a_u a_v sum of cosines,
    round(coef / (T' f)) with the IJG tables transposed (T'[u, v] = T[v, u]) and unfloored float scaling f,
    inverse DCT, nearest 2x chroma, RGB, clamp to [0, 255]. image (3, H, W) in [0, 1] -> (3, H, W)."""
    h, w = image.shape[1:]
    hp, wp = -(-h // 16) * 16, -(-w // 16) * 16
    x = np.zeros((3, hp, wp))
    x[:, :h, :w] = np.clip(image, 0, 1) * 255
    r, g, b = x
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    cb, cr = (c.reshape(hp // 2, 2, wp // 2, 2).mean(axis=(1, 3)) for c in (cb, cr))
    f = 5000 / quality / 100 if quality < 50 else (200 - 2 * quality) / 100
    n = np.arange(8)
    cos = np.cos((2 * n[:, None] + 1) * n[None, :] * np.pi / 16)  # cos[x, u]
    alpha = np.array([1 / np.sqrt(2)] + [1] * 7)
    scale = 0.25 * np.outer(alpha, alpha)

    def code(plane, table):
        out = np.empty_like(plane)
        for i in range(0, plane.shape[0], 8):
            for j in range(0, plane.shape[1], 8):
                coef = scale * np.einsum("xy,xu,yv->uv", plane[i : i + 8, j : j + 8] - 128, cos, cos)
                q = np.round(coef / (table * f)) * (table * f)
                out[i : i + 8, j : j + 8] = 0.25 * np.einsum("uv,xu,yv->xy", q * np.outer(alpha, alpha), cos, cos)
        return out + 128

    y = code(y, IJG_LUMA.T)
    cb, cr = (np.repeat(np.repeat(code(c, IJG_CHROMA.T), 2, 0), 2, 1) for c in (cb, cr))
    rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)])
    return np.clip(rgb, 0, 255)[:, :h, :w] / 255


@pytest.mark.parametrize("quality", [30.0, 47.5, 60.0, 95.0])
def test_jpeg_matches_the_official_diffjpeg(photos, quality):
    """strsr (float32, matrix DCT) vs the float64 block-loop reference, on 128 px photos and a 77x93 crop (not a
    multiple of 16: black padding). Observed: identical to 3e-7 but where float32 rounding flips a coefficient on a
    .5 boundary (none on these images); required: 99.9% of values within 1e-5, PSNR > 60 dB."""
    images = [photos[i] for i in range(3)] + [photos[2, :, :77, :93]]
    for image in images:
        got = jpeg_compress(image[None], torch.tensor([quality]))[0].double().numpy()
        ref = _diffjpeg_reference(image.double().numpy(), quality)
        err = np.abs(got - ref)
        assert (err < 1e-5).mean() > 0.999
        assert 10 * np.log10(1 / np.mean(err**2)) > 60
        assert 10 * np.log10(1 / np.mean((ref - image.double().numpy()) ** 2)) < 45  # it does compress


def test_jpeg_is_a_little_harsher_than_libjpeg(photos):
    """Same quality, PIL (libjpeg): the official codec is close to it and not milder. Observed here at 30 / 60 / 95:
    PSNR to PIL's 34-40 dB; PSNR to the original 0.1-0.4 dB below PIL's."""
    from PIL import Image

    for quality in (30, 60, 95):
        got = jpeg_compress(photos, torch.full((3,), float(quality)))
        pil = []
        for i in range(3):
            buffer = io.BytesIO()
            array = (photos[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
            pil.append(torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255)
        pil = torch.stack(pil)
        assert (_psnr(got, pil) > 32).all()
        assert _psnr(got, photos).mean() < _psnr(pil, photos).mean() + 0.05


def test_quality_factor_is_the_ijg_scaling():
    q = torch.tensor([10.0, 30.0, 50.0, 75.0, 95.0])
    torch.testing.assert_close(quality_factor(q), torch.tensor([5.0, 5 / 3, 1.0, 0.5, 0.1]))
    with pytest.raises(ValueError, match=r"quality must be in \(0, 100\)"):
        jpeg_compress(torch.rand(1, 3, 16, 16), torch.tensor([100.0]))


def test_jpeg_per_sample_quality(photos):
    """Each sample is coded at its own quality: its distance to the one-image result at that quality is far below
    its distance to the one-image results at the other qualities. Observed: 0 (CPU) against 4e-3..1.2e-2 mean
    absolute difference; required below 1% of the nearest other quality's, and below 1e-4 (a flipped coefficient
    on another device changes one 8x8 block by one step)."""
    qualities = (30.0, 60.0, 90.0)
    batch = jpeg_compress(photos, torch.tensor(qualities))
    for i, own in enumerate(qualities):
        distance = {q: (batch[i] - jpeg_compress(photos[i : i + 1], torch.tensor([q]))[0]).abs().mean().item()
                    for q in qualities}  # fmt: skip
        nearest_other = min(d for q, d in distance.items() if q != own)
        assert distance[own] < 0.01 * nearest_other and distance[own] < 1e-4


# ------------------------------------------------------------------------------------ ragged-batch canvas


def _ragged(photos: torch.Tensor) -> list[torch.Tensor]:
    return [photos[0:1, :, :37, :45], photos[1:2, :, :50, :29], photos[2:3, :, :9, :64]]


def test_ragged_blur_equals_per_sample_blur(photos):
    images = _ragged(photos)
    kernels = random_kernels(3, _gen(3))
    canvas, sizes = _pack(images)
    for im, got, k in zip(images, _unpack(_filter_ragged(canvas, sizes, kernels), sizes), kernels):
        torch.testing.assert_close(got, filter2d(im, k[None]), atol=1e-6, rtol=0)


def test_ragged_jpeg_equals_per_sample_jpeg(photos):
    """Zeroed outside its region, each sample is coded as if alone (the codec's black padding, independent 16x16
    macroblocks), whether or not its sides are multiples of 16 (here 37x45, 48x32, 9x64)."""
    images = [photos[0:1, :, :37, :45], photos[1:2, :, :48, :32], photos[2:3, :, :9, :64]]
    canvas, sizes = _pack(images)
    quality = torch.tensor([35.0, 80.0, 55.0])
    for i, got in enumerate(_unpack(_jpeg_ragged(canvas, sizes, quality), sizes)):
        torch.testing.assert_close(got, jpeg_compress(images[i], quality[i : i + 1]), atol=1e-6, rtol=0)
    assert torch.equal(_jpeg_ragged(canvas, sizes, quality), _pack(_unpack(_jpeg_ragged(canvas, sizes, quality),
                                                                            sizes))[0])  # edge replication restored


# ---------------------------------------------------------------------------------------- USM, upsampling


def test_usm_matches_scipy_reference(photos):
    """Against scipy's separable Gaussian (sigma 8, radius 25, whole-sample mirror borders = torch's reflect)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    x = photos.double().numpy()

    def blur(a):
        return ndimage.gaussian_filter(a, sigma=(0, 0, 8, 8), mode="mirror", truncate=25 / 8)

    residual = x - blur(x)
    soft = blur((np.abs(residual) * 255 > 10).astype(np.float64))
    ref = soft * np.clip(x + 0.5 * residual, 0, 1) + (1 - soft) * x
    np.testing.assert_allclose(usm_sharpen(photos).numpy(), ref, atol=1e-5, rtol=0)


def test_usm_sharpens_photos_and_keeps_flat_images(photos):
    assert (_high_freq(usm_sharpen(photos)) > 1.3 * _high_freq(photos)).all()
    flat = torch.full((1, 3, 64, 64), 0.37)
    assert torch.equal(usm_sharpen(flat), flat)


def test_upsample_lr_is_clamped_bicubic(photos):
    lr = F.interpolate(photos, scale_factor=0.25, mode="area")
    up = upsample_lr(lr, (128, 128))
    assert up.shape == photos.shape and up.min() >= 0 and up.max() <= 1
    torch.testing.assert_close(up, F.interpolate(lr, size=(128, 128), mode="bicubic").clamp(0, 1))


# ------------------------------------------------------------------------------------------------ PairQueue


def _tagged(first_id: int, b: int = 2) -> DegradedPair:
    """Pairs whose every LR/HR pixel holds the pair's id, so alignment is visible."""
    ids = torch.arange(first_id, first_id + b, dtype=torch.float32).view(-1, 1, 1, 1)
    return DegradedPair(lr_raw=ids.expand(b, 3, 4, 4).clone(), hr=ids.expand(b, 3, 16, 16).clone())


def _run_queue(queue: PairQueue, seed: int, pushes: int = 8) -> list[DegradedPair]:
    gen = _gen(seed)
    return [queue(_tagged(2 * step), gen) for step in range(pushes)]


def test_pair_queue_outputs_pushed_aligned_pairs():
    outs = _run_queue(PairQueue(size=6), seed=0)
    assert torch.equal(outs[0].lr_raw, _tagged(0).lr_raw)  # passes through while filling
    for step, out in enumerate(outs):
        ids = out.lr_raw[:, 0, 0, 0]
        assert torch.equal(out.lr_raw, ids.view(-1, 1, 1, 1).expand_as(out.lr_raw))
        assert torch.equal(out.hr, ids.view(-1, 1, 1, 1).expand_as(out.hr))  # LR and HR stay paired
        assert set(ids.tolist()) <= set(range(2 * step + 2))  # only pairs pushed so far
    assert any(not torch.equal(out.lr_raw, _tagged(2 * s).lr_raw) for s, out in enumerate(outs[3:], 3))  # it does mix


def test_pair_queue_is_deterministic_and_resumes():
    a, b = _run_queue(PairQueue(size=6), seed=5), _run_queue(PairQueue(size=6), seed=5)
    assert all(torch.equal(x.lr_raw, y.lr_raw) and torch.equal(x.hr, y.hr) for x, y in zip(a, b))

    queue, gen = PairQueue(size=6), _gen(5)
    for step in range(4):
        queue(_tagged(2 * step), gen)
    resumed = PairQueue(size=6)
    resumed.load_state_dict({k: v.clone() if torch.is_tensor(v) else v for k, v in queue.state_dict().items()})
    gen_copy = torch.Generator().set_state(gen.get_state())
    for step in range(4, 8):
        x, y = queue(_tagged(2 * step), gen), resumed(_tagged(2 * step), gen_copy)
        assert torch.equal(x.lr_raw, y.lr_raw) and torch.equal(x.hr, y.hr)


def test_pair_queue_rejects_batch_not_dividing_size():
    with pytest.raises(ValueError, match="multiple"):
        PairQueue(size=5)(_tagged(0), _gen(0))
