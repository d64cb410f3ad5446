"""`SuperResolver`: the x4 inference pipeline around a `StrSRGenerator`, tiled as the official StrSR scripts tile.

Per image: bicubic x4 to the output size (PyTorch's, clamped to [0, 1]), reflect-padded once to a multiple of 16,
split into the official tile plan (`strsr.inference.tiling`), one model step per tile, the outputs blended in the
model's [-1, 1] range, the blend clamped once, mapped to [0, 1] and cropped back. Each tile's upsampled pixels are
computed from a small LR window (bicubic is local), bit-identical to cropping the padded full-size upsampled image,
which is therefore never held in memory.

With `latent="sample"` the VAE posterior noise comes from a generator seeded with `seed` once per image and drawn
tile by tile in row-major order: the very draws the official scripts make after `torch.manual_seed(seed)`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from strsr.inference.tiling import Tile, blend_tiles
from strsr.io.images import LoadedImage, image_from_pil, quantize, write_samples
from strsr.model.build import build_inference_generator, checkpoint_for
from strsr.model.generator import StrSRGenerator
from strsr.presets import get_preset
from strsr.spec import ModelSpec

log = logging.getLogger("strsr")

SCALE = 4
# The official scripts pad the upsampled image to a multiple of 16 (VAE 8x, token patch 2x); a preset whose pixel
# multiple does not divide 16 pads to the least common multiple.
OFFICIAL_PAD_MULTIPLE = 16
# LR pixels of context around a region: bicubic x4 reads at most 2 LR pixels beyond the source footprint.
_BICUBIC_CONTEXT = 3
_ALPHA_BAND = 1024  # output rows of alpha upsampled at a time
# The largest output strsr-upscale writes: 2^28 pixels (e.g. 16384 x 16384; about 0.8 GB of 8-bit RGB); larger ones
# are refused before any work rather than failing deep inside an allocation.
MAX_OUTPUT_PIXELS = 1 << 28
MAX_INPUT_PIXELS = MAX_OUTPUT_PIXELS // SCALE**2


def check_output_size(height: int, width: int) -> None:
    if height * width > MAX_OUTPUT_PIXELS:
        raise ValueError(f"a {width // SCALE}x{height // SCALE} image upscales to {width}x{height} = "
                         f"{height * width:,} pixels, above strsr's limit of {MAX_OUTPUT_PIXELS:,}; split it first")


def bicubic_x4_region(lr: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Rows [top, bottom) and columns [left, right) of `F.interpolate(lr, 4, "bicubic").clamp(0, 1)` for `lr`
    (B, C, h, w), bit-identical to that crop, computed from an LR window around the region."""
    h, w = lr.shape[-2:]
    y0, x0 = max(top // SCALE - _BICUBIC_CONTEXT, 0), max(left // SCALE - _BICUBIC_CONTEXT, 0)
    y1 = min(-(-bottom // SCALE) + _BICUBIC_CONTEXT, h)
    x1 = min(-(-right // SCALE) + _BICUBIC_CONTEXT, w)
    window = lr[..., y0:y1, x0:x1].contiguous()
    up = F.interpolate(window, scale_factor=SCALE, mode="bicubic", align_corners=False)
    return up[..., top - y0 * SCALE : bottom - y0 * SCALE, left - x0 * SCALE : right - x0 * SCALE].clamp(0, 1)


def padded_source(length: int, padded: int) -> torch.Tensor:
    """(padded,) int64: the source position of each position of a side of `length` padded at its end to `padded`,
    reflected as `F.pad(mode="reflect")` does; where the pad is not shorter than the side (reflect cannot pad it;
    the official scripts fail there) the edge is replicated instead."""
    index = torch.arange(padded)
    if padded - length < length:
        return torch.where(index < length, index, 2 * (length - 1) - index)
    return index.clamp(max=length - 1)


def upsampled_tile(lr: torch.Tensor, tile: Tile, padded_height: int, padded_width: int) -> torch.Tensor:
    """`tile` of the bicubic x4 upsampling of `lr` (B, C, h, w) reflect-padded to (padded_height, padded_width):
    (B, C, tile.height, tile.width) in [0, 1]."""
    height, width = lr.shape[-2] * SCALE, lr.shape[-1] * SCALE
    rows = padded_source(height, padded_height)[tile.top : tile.bottom]
    cols = padded_source(width, padded_width)[tile.left : tile.right]
    top, left = int(rows.min()), int(cols.min())
    region = bicubic_x4_region(lr, top, int(rows.max()) + 1, left, int(cols.max()) + 1)
    return region[..., rows - top, :][..., cols - left]


@dataclass(frozen=True, eq=False)
class UpscaledImage:
    """An upscaled image as integer samples, ready to write: (H, W, C) uint8 or uint16, C = 1 (grey), 2 (grey +
    alpha), 3 (RGB) or 4 (RGBA)."""

    samples: np.ndarray

    def to_pil(self) -> Image.Image:
        """A Pillow image: 8-bit L, LA, RGB or RGBA, or 16-bit grey (I;16); Pillow has no 16-bit colour mode."""
        samples = self.samples[..., 0] if self.samples.shape[-1] == 1 else self.samples
        if samples.dtype == np.uint16 and samples.ndim == 3:
            raise ValueError("Pillow has no 16-bit colour mode: upscale with bit_depth=8 for a Pillow image")
        return Image.fromarray(samples)

    def save(self, path) -> None:
        """Write atomically; the format comes from the suffix (`strsr.imageio.write_samples`)."""
        write_samples(path, self.samples)


class SuperResolver:
    """x4 super-resolution with a StrSR generator, tile by tile.

        resolver = SuperResolver.from_preset("tiny")
        big = resolver(Image.open("photo.png"))            # PIL in, PIL out
        out = resolver.upscale_tensor(lr)                   # (B, 3, h, w) in [0, 1] -> (B, 3, 4h, 4w)
    """

    def __init__(self, model: StrSRGenerator, *, tile: int = 1024, overlap: int = 64, seed: int = 0,
                 weights_are_random=False):  # fmt: skip
        """`tile` and `overlap` are in output pixels (the official defaults); `seed` seeds each image's VAE
        posterior sample (latent "sample")."""
        multiple = model.preset.latents.pixel_multiple
        if tile % multiple or tile <= 0:
            raise ValueError(f"tile size {tile} must be a positive multiple of {multiple}")
        if not 0 <= overlap < tile:
            raise ValueError(f"overlap {overlap} must be in [0, tile)")
        self.model = model.eval()
        self.tile = tile
        self.overlap = overlap
        self.seed = seed
        self.weights_are_random = weights_are_random

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, tile: int | None = None, overlap: int = 64) -> SuperResolver:
        """The pipeline around the generator `spec` describes; `tile` None is the preset's default tile."""
        preset = get_preset(spec.preset)
        model = build_inference_generator(spec)  # LoRA merged, then --quantize, --compile
        random = spec.pretrained is None and checkpoint_for(spec, preset) is None
        return cls(model, tile=tile or preset.default_tile, overlap=overlap, seed=spec.seed, weights_are_random=random)

    @classmethod
    def from_preset(cls, preset: str = "tiny", *, tile: int | None = None, overlap: int = 64, **model) -> SuperResolver:
        """`from_spec(ModelSpec(preset=preset, **model))`: e.g. `SuperResolver.from_preset("tiny")`, or
        `from_preset("flux2-klein-4b", pretrained=..., vlm=..., checkpoint=...)` (any `ModelSpec` field)."""
        return cls.from_spec(ModelSpec(preset=preset, **model), tile=tile, overlap=overlap)

    @classmethod
    def from_export(cls, engine_dir: str | Path, spec: ModelSpec, *, runtime: str = "onnx", tile: int | None = None,
                    overlap: int = 64, cuda_graph: bool = False, verify: bool = False) -> SuperResolver:  # fmt: skip
        """Run an `strsr-export` folder made for `spec.preset` in ONNX Runtime (`onnx`) or TensorRT (`trt`), with the
        same tiling and blending; `spec.vlm` is the Qwen3-VL folder a VLM-conditioned export needs (the VLM runs in
        PyTorch) and `spec.seed` seeds a sampling export's noise. `cuda_graph` (TensorRT) replays a captured graph
        per tile shape; `verify` checks every file's sha256 against the manifest (sizes are always checked). `tile`
        None is the tile the export was made for (its manifest's, as strsr-infer takes it)."""
        if runtime == "trt":
            from strsr.inference.tensorrt_runtime import TrtGenerator

            generator = TrtGenerator(engine_dir, spec.preset, cuda_graph=cuda_graph, vlm=spec.vlm, verify=verify)
        elif runtime == "onnx":
            from strsr.inference.onnx_runtime import OnnxGenerator

            generator = OnnxGenerator(engine_dir, spec.preset, vlm=spec.vlm, verify=verify)
        else:
            raise ValueError(f"unknown exported runtime {runtime!r} (onnx or trt)")
        tile = tile or int(generator.manifest.get("tile") or get_preset(spec.preset).default_tile)
        return cls(generator, tile=tile, overlap=overlap, seed=spec.seed)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def restore(self, upsampled: torch.Tensor, condition=None, generator: torch.Generator | None = None):
        """One model pass on an upsampled tile (B, 3, H, W) in [0, 1], sides multiples of the pixel multiple ->
        the model's output (B, 3, H, W) float32 in its [-1, 1] range, not clamped."""
        return self.model(upsampled.to(self.device) * 2.0 - 1.0, condition, generator)

    def latent_generator(self) -> torch.Generator:
        """A fresh generator for one image's posterior noise, on the model's device, seeded with `seed`."""
        return torch.Generator(self.device).manual_seed(self.seed)

    @torch.no_grad()
    def upscale_tensor(self, lr: torch.Tensor, progress=None) -> torch.Tensor:
        """(B, 3, h, w) float in [0, 1] -> (B, 3, 4h, 4w) float32 in [0, 1], on the CPU.

        `progress`, if given, is called with the number of tiles once, then once per finished tile (None).
        """
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an LR batch of shape (B, 3, h, w), got {tuple(lr.shape)}")
        blocks = self._blocks(lr, progress)
        return torch.cat([rows for _, rows in blocks], dim=2)

    def _blocks(self, lr: torch.Tensor, progress=None):
        """Finished output rows of (B, 3, h, w) LR images, top to bottom: (top, rows (B, 3, n, 4w) in [0, 1])."""
        if not lr.is_floating_point():
            raise ValueError(f"expected a float tensor in [0, 1], got {lr.dtype}")
        if not bool(torch.isfinite(lr).all()):
            raise ValueError("the LR image has NaN or infinite values")
        batch, _, h, w = lr.shape
        height, width = h * SCALE, w * SCALE
        check_output_size(height, width)
        multiple = math.lcm(OFFICIAL_PAD_MULTIPLE, self.model.preset.latents.pixel_multiple)
        padded_height, padded_width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        condition = self.model.condition_for(lr)  # once per image, not per tile
        lr = lr.float().cpu()  # the official bicubic runs on the CPU
        generator = self.latent_generator()

        def produce(tile: Tile) -> torch.Tensor:
            upsampled = upsampled_tile(lr, tile, padded_height, padded_width)
            return self.restore(upsampled, condition, generator).cpu()

        for top, rows in blend_tiles(produce, batch, 3, padded_height, padded_width, self.tile, self.overlap,
                                     progress):  # fmt: skip
            if top < height:  # the padding's rows and columns are cut off
                yield top, ((rows.clamp(-1, 1) + 1.0) / 2.0)[..., : height - top, :width]

    def upscale_image(self, image: LoadedImage, progress=None, *, bit_depth: int | None = None,
                      alpha: bool = True, rounding: str = "floor") -> UpscaledImage:  # fmt: skip
        """An image -> its integer samples, written row block by row block as the tiles finish, so memory is the
        output's samples plus one band of tiles. `bit_depth` 8 or 16 (default: the source's); `alpha` False drops
        the source's alpha (e.g. for JPEG); `rounding` as in `strsr.imageio.quantize` (floor: the official one)."""
        bit_depth = bit_depth or image.bit_depth
        height, width = image.height * SCALE, image.width * SCALE
        check_output_size(height, width)
        keep_alpha = alpha and image.alpha is not None
        channels = (1 if image.grayscale else 3) + keep_alpha
        samples = np.empty((height, width, channels), np.uint16 if bit_depth == 16 else np.uint8)
        for top, rows in self._blocks(image.rgb.unsqueeze(0), progress):
            colour = rows[0].mean(0, keepdim=True) if image.grayscale else rows[0]  # (c, n, W)
            samples[top : top + colour.shape[1], :, : channels - keep_alpha] = quantize(
                colour.permute(1, 2, 0).numpy(), bit_depth, rounding)  # fmt: skip
        if keep_alpha:  # alpha is not an image the model knows: plain bicubic, a band at a time
            for top in range(0, height, _ALPHA_BAND):
                bottom = min(top + _ALPHA_BAND, height)
                plane = bicubic_x4_region(image.alpha[None].float(), top, bottom, 0, width)[0, 0]
                samples[top:bottom, :, -1] = quantize(plane.numpy(), bit_depth, rounding)
        return UpscaledImage(samples)

    def __call__(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        """PIL image -> PIL image; (3, h, w) or (B, 3, h, w) tensor in [0, 1] -> tensor of 4x the size."""
        if isinstance(image, Image.Image):
            return self.upscale_image(image_from_pil(image), bit_depth=8).to_pil()
        if isinstance(image, torch.Tensor):
            return self.upscale_tensor(image[None])[0] if image.ndim == 3 else self.upscale_tensor(image)
        raise TypeError(f"expected a PIL image or a tensor, got {type(image).__name__}")
