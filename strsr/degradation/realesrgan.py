"""On-the-fly RealESRGAN second-order degradation (Wang et al., "Real-ESRGAN", ICCVW 2021), batched in torch.

HR (B, 3, H, W) -> [USM-sharpened GT] -> blur -> resize -> noise -> JPEG -> blur -> resize -> noise ->
{[resize to H/4 -> sinc -> JPEG] or [JPEG -> resize to H/4 -> sinc]} -> LR (float, neither clamped nor rounded).

The LR stays as the last filter leaves it, as in the official StrSR trainer, which rounds only where it uses it:
the generator's input is that LR bicubic-upsampled, then clamped and rounded to 8 bits (`model_input`), and the VLM
reads it clamped and truncated to 8 bits (`strsr.vlm.to_uint8`). `DegradedPair.lr` is the LR as an 8-bit image.

Design, and where it departs from the reference training code (Real-ESRGAN's `feed_data`):
- Every parameter is drawn per sample. The reference shares the resize scale and mode, the noise type, the
  second-blur coin and the final order across a batch (its pair queue exists to mix that back); here only the
  queue's shuffling is batch-level. Per-sample resizes give ragged intermediate sizes, so between the first and the
  last resize the batch lives on a "canvas": a (B, C, Hmax, Wmax) tensor, sample i valid in [:h_i, :w_i] and
  edge-replicated beyond. Noise and JPEG run on the whole canvas (for JPEG each sample is zeroed outside its
  valid region first: the codec pads with black and codes every 16x16 macroblock on its own, so each sample is
  coded exactly as if alone); blurs reflect-pad each sample by the kernel radius in a Python loop (a copy), then one
  grouped conv2d runs for the batch. Resizes loop over the batch (one
  F.interpolate per sample). Kernels, USM, noise, JPEG and the final quantisation are fully batched.
- Parameters are a few numbers per sample, drawn on a CPU generator seeded from the caller's generator: sizes and
  branch choices are then known on the host without a device sync per decision. Pixel noise is drawn from the
  caller's generator, on its device. Nothing touches the global RNG.
- JPEG is `strsr.jpeg.jpeg_compress`, the arithmetic of BasicSR's DiffJPEG(differentiable=False) that the official
  trainer uses (per-sample quality, hard rounding), not libjpeg.
- The LR is degraded from the sharpened GT when `sharpen_gt` (as the reference, whose L1/perceptual targets are the
  sharpened GT), from the plain GT otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from strsr.degradation.blur_kernels import pulse_kernels, random_final_sinc_kernels, random_kernels
from strsr.degradation.config import DegradationConfig
from strsr.degradation.jpeg import jpeg_compress
from strsr.io.images import BT601_LUMA

Size = tuple[int, int]
INTERP_MODES = ("area", "bilinear", "bicubic")


@dataclass
class DegradedPair:
    """A training pair: lr_raw (B, 3, H/4, W/4) float32, the degraded image as the pipeline leaves it (may stray a
    little outside [0, 1] after the last filter, not quantised: the official trainer's `low_LQ`), and hr (B, 3, H, W)
    float32 in [0, 1]."""

    lr_raw: torch.Tensor
    hr: torch.Tensor

    @property
    def lr(self) -> torch.Tensor:
        """The LR as an 8-bit image: lr_raw clamped to [0, 1] and rounded to multiples of 1/255."""
        return quantise(self.lr_raw)


# ----------------------------------------------------------------------------------------------- filters


def _pad_mode(h: int, w: int, pad: int) -> str:
    # Reflect padding needs pad < side. After a 0.15x first resize a small crop can be narrower than a kernel
    # radius; edge replication is then the nearest well-defined border.
    return "reflect" if pad < min(h, w) else "replicate"


def _grouped_conv(padded: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Valid correlation of each sample's channels with its kernel: (B, C, Hp, Wp), (B or 1, k, k) -> (B, C, Hp-k+1,
    Wp-k+1). Correlation equals convolution here: every kernel of the family is point-symmetric."""
    b, c, hp, wp = padded.shape
    k = kernels.shape[-1]
    weight = kernels.to(padded).reshape(-1, 1, k, k).expand(b, c, k, k).reshape(b * c, 1, k, k)
    out = F.conv2d(padded.reshape(1, b * c, hp, wp), weight, groups=b * c)
    return out.reshape(b, c, hp - k + 1, wp - k + 1)


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-sample blur with reflected borders. images (B, C, H, W) float; kernels (B, k, k) or (1, k, k), k odd.

    Returns (B, C, H, W) in the images' dtype.
    """
    r = kernels.shape[-1] // 2
    return _grouped_conv(F.pad(images, (r, r, r, r), mode=_pad_mode(*images.shape[-2:], r)), kernels)


def _gaussian_blur(images: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders: (B, C, H, W) -> (B, C, H, W)."""
    t = torch.arange(size, dtype=torch.float64, device=images.device) - size // 2
    taps = torch.exp(-(t**2) / (2 * sigma**2))
    taps = (taps / taps.sum()).to(images.dtype)
    b, c, h, w = images.shape
    r = size // 2
    x = F.pad(images.reshape(b * c, 1, h, w), (r, r, r, r), mode="reflect")
    x = F.conv2d(F.conv2d(x, taps.view(1, 1, 1, size)), taps.view(1, 1, size, 1))
    return x.reshape(b, c, h, w)


def usm_sharpen(images: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: int = 10) -> torch.Tensor:
    """Unsharp masking as RealESRGAN sharpens its training targets.

    residual = I - G(I), G a Gaussian of odd size (radius, or radius + 1) and OpenCV's default sigma for that size
    (8 for 51 taps); sharp = clamp(I + weight * residual); the result blends sharp and I with a blurred mask of
    |residual| > threshold / 255, so flat regions (and their noise) stay untouched.

    images: (B, C, H, W) float in [0, 1], H and W larger than half the kernel size. Returns the same shape/dtype.
    """
    size = radius + 1 if radius % 2 == 0 else radius
    if min(images.shape[-2:]) <= size // 2:
        raise ValueError(f"usm_sharpen needs images larger than {size // 2} px, got {tuple(images.shape[-2:])}")
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # cv2.getGaussianKernel(size, 0), which the reference uses
    residual = images - _gaussian_blur(images, size, sigma)
    soft_mask = _gaussian_blur((residual.abs() * 255 > threshold).to(images.dtype), size, sigma)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft_mask * sharp + (1 - soft_mask) * images


def upsample_lr(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of lr (B, C, h, w) to size (H, W), clamped to [0, 1] (the model encodes this)."""
    return F.interpolate(lr, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)


def quantise(images: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8 bits: (x * 255).round().clamp(0, 255) / 255, any shape."""
    return (images * 255).round().clamp(0, 255) / 255


def model_input(lr_raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The generator's training input in [0, 1], as the official trainer makes it: the raw LR (B, 3, h, w) bicubic-
    upsampled to size (H, W), then clamped and rounded to 8 bits (the pixels a saved LR image upsampled would give)."""
    return quantise(F.interpolate(lr_raw, size=tuple(size), mode="bicubic", align_corners=False))


# ------------------------------------------------------------------------------------------ noise, JPEG


def _randn(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device)


def gaussian_noise(
    images: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Additive white Gaussian noise, returned (not added): (B, C, H, W) float like images.

    sigma: (B,) standard deviation on the 0-255 scale; gray: (B,) bool, one field shared by all channels.
    The fields are drawn from `generator` on its device.
    """
    b, c, h, w = images.shape
    color = _randn((b, c, h, w), generator).to(images)
    mono = _randn((b, 1, h, w), generator).to(images)
    noise = torch.where(gray.to(images.device).view(-1, 1, 1, 1), mono.expand_as(color), color)
    return noise * (sigma.to(images) / 255).view(-1, 1, 1, 1)


def _shot_noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Poisson(v x) / v - x for 8-bit quantised x (B, C, H, W), v = the sample's number of distinct levels rounded
    up to a power of two (as the reference; 256 for almost any photo). Counted with a histogram, not torch.unique,
    so there is no per-sample host sync."""
    levels = (x * 255).round().long().flatten(1)
    seen = torch.zeros(x.shape[0], 256, device=x.device).scatter_(1, levels, 1.0)
    v = torch.exp2(torch.ceil(torch.log2(seen.sum(1)))).view(-1, 1, 1, 1)
    counts = torch.poisson((x * v).to(generator.device), generator=generator).to(x)
    return counts / v - x


def poisson_noise(
    images: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Signal-dependent (shot) noise as RealESRGAN models it, returned (not added): (B, C, H, W) like images.

    The image is quantised to 8 bits; with v its distinct-level count rounded up to a power of two, the noise is
    scale * (Poisson(v x) / v - x), so its variance is scale^2 x / v. scale: (B,); gray: (B,) bool, noise from the
    BT.601 luma shared by all channels.
    """
    quantised = (images * 255).round().clamp(0, 255) / 255
    color = _shot_noise(quantised, generator)
    luma = sum(w * images[:, i : i + 1] for i, w in enumerate(BT601_LUMA))  # (B, 1, H, W)
    mono = _shot_noise((luma * 255).round().clamp(0, 255) / 255, generator)
    noise = torch.where(gray.to(images.device).view(-1, 1, 1, 1), mono.expand_as(color), color)
    return noise * scale.to(images).view(-1, 1, 1, 1)




# ------------------------------------------------------------------------------- ragged-batch canvas


def _pack(images: list[torch.Tensor]) -> tuple[torch.Tensor, list[Size]]:
    """(1, C, h_i, w_i) images -> (B, C, Hmax, Wmax) canvas, each edge-replicated to the right and bottom."""
    sizes = [(im.shape[-2], im.shape[-1]) for im in images]
    hm, wm = max(s[0] for s in sizes), max(s[1] for s in sizes)
    padded = [im if (h, w) == (hm, wm) else F.pad(im, (0, wm - w, 0, hm - h), mode="replicate")
              for im, (h, w) in zip(images, sizes)]  # fmt: skip
    return torch.cat(padded), sizes


def _unpack(canvas: torch.Tensor, sizes: list[Size]) -> list[torch.Tensor]:
    return [canvas[i : i + 1, :, :h, :w] for i, (h, w) in enumerate(sizes)]


def _repack(canvas: torch.Tensor, sizes: list[Size]) -> torch.Tensor:
    """Restore the edge replication that an op applied to the whole canvas disturbed."""
    if all(s == tuple(canvas.shape[-2:]) for s in sizes):
        return canvas
    return _pack(_unpack(canvas, sizes))[0]


def _jpeg_ragged(canvas: torch.Tensor, sizes: list[Size], quality: torch.Tensor) -> torch.Tensor:
    """jpeg_compress on a canvas, each sample coded as if alone: zeroed outside its valid region (the codec's own
    black padding; its 16x16 macroblocks are independent), then edge replication restored."""
    if all(s == tuple(canvas.shape[-2:]) for s in sizes):
        return jpeg_compress(canvas, quality)
    rows = torch.arange(canvas.shape[-2], device=canvas.device).view(1, -1, 1)
    cols = torch.arange(canvas.shape[-1], device=canvas.device).view(1, 1, -1)
    heights = torch.tensor([s[0] for s in sizes], device=canvas.device).view(-1, 1, 1)
    widths = torch.tensor([s[1] for s in sizes], device=canvas.device).view(-1, 1, 1)
    valid = ((rows < heights) & (cols < widths)).unsqueeze(1)  # (B, 1, Hc, Wc)
    return _repack(jpeg_compress(canvas * valid, quality), sizes)


def _filter_ragged(canvas: torch.Tensor, sizes: list[Size], kernels: torch.Tensor) -> torch.Tensor:
    """filter2d on a canvas: each sample is reflect-padded from its own border, then one batched conv."""
    if all(s == tuple(canvas.shape[-2:]) for s in sizes):
        return filter2d(canvas, kernels)
    r = kernels.shape[-1] // 2
    padded = [F.pad(im, (r, r, r, r), mode=_pad_mode(h, w, r)) for im, (h, w) in zip(_unpack(canvas, sizes), sizes)]
    return _repack(_grouped_conv(_pack(padded)[0], kernels), sizes)


def _resize_each(
    images: list[torch.Tensor], modes: list[str], *, scales: list[float] | None = None, sizes: list[Size] | None = None
) -> tuple[torch.Tensor, list[Size]]:
    """Resize sample by sample (sizes differ), by scale factor or to a size; returns the packed canvas."""
    out = []
    for i, (im, mode) in enumerate(zip(images, modes)):
        if scales is not None:
            out.append(F.interpolate(im, scale_factor=scales[i], mode=mode))
        else:
            out.append(F.interpolate(im, size=sizes[i], mode=mode))
    return _pack(out)


# --------------------------------------------------------------------------------------------- pipeline


@dataclass
class _NoiseDraws:
    gaussian: torch.Tensor  # (B,) bool: Gaussian, else Poisson
    sigma: torch.Tensor  # (B,) 0-255 scale
    scale: torch.Tensor  # (B,) Poisson scale
    gray: torch.Tensor  # (B,) bool


@dataclass
class _Draws:
    """Every random choice of one call except the pixel noise; CPU tensors and host lists."""

    kernel1: torch.Tensor
    kernel2: torch.Tensor
    sinc: torch.Tensor
    scale1: list[float]
    scale2: list[float]
    modes: list[list[str]]  # first resize, second resize, resize to the output size
    noise1: _NoiseDraws
    noise2: _NoiseDraws
    quality1: torch.Tensor
    quality2: torch.Tensor
    resize_first: list[bool]


def _uniform(batch: int, bounds: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(batch, dtype=torch.float64, generator=g)


def _scales(batch: int, probs, bounds, g: torch.Generator) -> list[float]:
    kind = torch.multinomial(torch.tensor(probs, dtype=torch.float64), batch, replacement=True, generator=g)
    up, down = _uniform(batch, (1.0, bounds[1]), g), _uniform(batch, (bounds[0], 1.0), g)
    return torch.where(kind == 0, up, torch.where(kind == 1, down, torch.ones_like(up))).tolist()


def _noise(batch: int, g: torch.Generator, cfg: DegradationConfig, order: str) -> _NoiseDraws:
    """Noise draws of the first (order "") or second (order "2") degradation."""
    return _NoiseDraws(
        gaussian=torch.rand(batch, generator=g) < getattr(cfg, "gaussian_noise_prob" + order),
        sigma=_uniform(batch, getattr(cfg, "noise_range" + order), g).float(),
        scale=_uniform(batch, getattr(cfg, "poisson_scale_range" + order), g).float(),
        gray=torch.rand(batch, generator=g) < getattr(cfg, "gray_noise_prob" + order),
    )


def _kernels(batch: int, g: torch.Generator, cfg: DegradationConfig, order: str) -> torch.Tensor:
    return random_kernels(
        batch,
        g,
        kernel_probs=getattr(cfg, "kernel_probs" + order),
        sigma_range=getattr(cfg, "blur_sigma" + order),
        betag_range=getattr(cfg, "betag_range" + order),
        betap_range=getattr(cfg, "betap_range" + order),
        sinc_prob=getattr(cfg, "sinc_prob" + order),
        size=cfg.kernel_sizes[1],
        support_range=cfg.kernel_sizes,
    )


def _draw(batch: int, cfg: DegradationConfig, g: torch.Generator) -> _Draws:
    size = cfg.kernel_sizes[1]
    kernel1, kernel2 = _kernels(batch, g, cfg, ""), _kernels(batch, g, cfg, "2")
    second_blur = torch.rand(batch, generator=g) < cfg.second_blur_prob
    kernel2 = torch.where(second_blur.view(-1, 1, 1), kernel2, pulse_kernels(batch, size))
    sinc = random_final_sinc_kernels(batch, g, prob=cfg.final_sinc_prob, size=size, support_range=cfg.kernel_sizes)
    mode_index = torch.randint(len(INTERP_MODES), (3, batch), generator=g)
    return _Draws(
        kernel1=kernel1,
        kernel2=kernel2,
        sinc=sinc,
        scale1=_scales(batch, cfg.resize_probs, cfg.resize_range, g),
        scale2=_scales(batch, cfg.resize_probs2, cfg.resize_range2, g),
        modes=[[INTERP_MODES[i] for i in row] for row in mode_index.tolist()],
        noise1=_noise(batch, g, cfg, ""),
        noise2=_noise(batch, g, cfg, "2"),
        quality1=_uniform(batch, cfg.jpeg_range, g).float(),
        quality2=_uniform(batch, cfg.jpeg_range2, g).float(),
        resize_first=(torch.rand(batch, generator=g) < cfg.resize_first_prob).tolist(),
    )


def _add_noise(x: torch.Tensor, draws: _NoiseDraws, generator: torch.Generator) -> torch.Tensor:
    """x + Gaussian or Poisson noise per sample, clamped to [0, 1]; each type is drawn only for its samples."""
    noise = torch.zeros_like(x)
    branches = ((draws.gaussian, gaussian_noise, draws.sigma), (~draws.gaussian, poisson_noise, draws.scale))
    for use, make, strength in branches:
        idx = use.nonzero().flatten()
        if idx.numel():
            on_device = idx.to(x.device)
            noise[on_device] = make(x[on_device], strength[idx], draws.gray[idx], generator)
    return (x + noise).clamp(0, 1)


class RealESRGANDegradation:
    """Synthesises (LR, GT) training pairs from HR crops with the RealESRGAN second-order degradation.

    Call with hr (B, 3, H, W) float in [0, 1] (H, W multiples of `scale`, at least 32) and a torch.Generator; the
    same generator state gives the same pair bit for bit on the same device. Pixel noise is drawn on the
    generator's device: pass one on hr's device to keep the work there. Returns float32 tensors.
    """

    def __init__(self, config: DegradationConfig = DegradationConfig(), scale: int = 4):
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.config = config
        self.scale = scale

    def _check(self, hr: torch.Tensor, generator: torch.Generator) -> None:
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (the global RNG is never used)")
        if hr.ndim != 4 or hr.shape[1] != 3 or not hr.is_floating_point():
            raise ValueError(f"hr must be a float (B, 3, H, W) tensor, got {tuple(hr.shape)} {hr.dtype}")
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale or min(h, w) < 32:
            raise ValueError(f"hr sides must be multiples of {self.scale} and at least 32, got {h}x{w}")

    @torch.no_grad()
    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> DegradedPair:
        self._check(hr, generator)
        b, _, h, w = hr.shape
        device, s = hr.device, self.scale
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        d = _draw(b, self.config, torch.Generator().manual_seed(seed))
        gt = hr.float()
        gt = usm_sharpen(gt) if self.config.sharpen_gt else gt

        # First order: blur, resize, noise, JPEG.
        x = filter2d(gt, d.kernel1.to(device))
        canvas, sizes = _resize_each(list(x.split(1)), d.modes[0], scales=d.scale1)
        canvas = _repack(_add_noise(canvas, d.noise1, generator), sizes)
        canvas = _jpeg_ragged(canvas, sizes, d.quality1)

        # Second order: blur (identity for samples that skip it), resize relative to the output size, noise.
        canvas = _filter_ragged(canvas, sizes, d.kernel2.to(device))
        targets = [(max(1, int(h / s * f)), max(1, int(w / s * f))) for f in d.scale2]
        canvas, sizes = _resize_each(_unpack(canvas, sizes), d.modes[1], sizes=targets)
        canvas = _repack(_add_noise(canvas, d.noise2, generator), sizes)

        # Last steps, order per sample: [resize, sinc, JPEG] or [JPEG, resize, sinc].
        images = _unpack(canvas, sizes)
        late = [i for i in range(b) if not d.resize_first[i]]
        if late:
            idx = torch.tensor(late, device=device)
            late_sizes = [sizes[i] for i in late]
            coded = _unpack(_jpeg_ragged(canvas[idx], late_sizes, d.quality2[late]), late_sizes)
            for i, im in zip(late, coded):
                images[i] = im
        x, _ = _resize_each(images, d.modes[2], sizes=[(h // s, w // s)] * b)
        x = filter2d(x, d.sinc.to(device))
        early = [i for i in range(b) if d.resize_first[i]]
        if early:
            idx = torch.tensor(early, device=device)
            x[idx] = jpeg_compress(x[idx], d.quality2[early])
        return DegradedPair(lr_raw=x, hr=gt)


class PairQueue:
    """RealESRGAN's training-pair pool: mixes pairs across batches.

    Until `size` pairs are stored, each batch is stored and passed through. Then each call shuffles the pool with
    `generator`, hands out its first B pairs and stores the incoming batch in their place. `size` must be a
    multiple of the batch size, and every batch must have the same shapes. The pool lives on the pairs' device.
    The default size is the official StrSR configs' 256 (RealESRGAN's own is 180).
    """

    def __init__(self, size: int = 256):
        if size < 1:
            raise ValueError(f"queue size must be positive, got {size}")
        self.size = size
        self._lr: torch.Tensor | None = None
        self._hr: torch.Tensor | None = None
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    @torch.no_grad()
    def __call__(self, pair: DegradedPair, generator: torch.Generator) -> DegradedPair:
        b = pair.lr_raw.shape[0]
        if pair.hr.shape[0] != b:
            raise ValueError(f"lr and hr batch sizes differ: {b} vs {pair.hr.shape[0]}")
        if self._lr is None:
            if self.size % b:
                raise ValueError(f"queue size {self.size} is not a multiple of the batch size {b}")
            self._lr = pair.lr_raw.new_zeros((self.size, *pair.lr_raw.shape[1:]))
            self._hr = pair.hr.new_zeros((self.size, *pair.hr.shape[1:]))
        elif pair.lr_raw.shape[1:] != self._lr.shape[1:] or pair.hr.shape[1:] != self._hr.shape[1:] or self.size % b:
            raise ValueError("batches pushed to a PairQueue need equal shapes and a batch size dividing the queue size")
        if self._filled < self.size:
            self._lr[self._filled : self._filled + b] = pair.lr_raw
            self._hr[self._filled : self._filled + b] = pair.hr
            self._filled += b
            return pair
        perm = torch.randperm(self.size, generator=generator, device=generator.device).to(self._lr.device)
        self._lr, self._hr = self._lr[perm], self._hr[perm]
        out = DegradedPair(lr_raw=self._lr[:b].clone(), hr=self._hr[:b].clone())
        self._lr[:b] = pair.lr_raw
        self._hr[:b] = pair.hr
        return out

    def state_dict(self) -> dict:
        """The pool (for bit-identical resume): {"lr", "hr": tensors or None, "filled": int}."""
        return {"lr": self._lr, "hr": self._hr, "filled": self._filled}

    def load_state_dict(self, state: dict) -> None:
        if state["lr"] is not None and state["lr"].shape[0] != self.size:
            raise ValueError(f"saved queue holds {state['lr'].shape[0]} pairs, this one {self.size}")
        self._lr, self._hr, self._filled = state["lr"], state["hr"], int(state["filled"])
