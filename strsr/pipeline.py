"""`SuperResolver`: the x4 inference pipeline around a `StrSRGenerator`.

Per image: bicubic x4 to the output size, split into output tiles, reflect-pad each tile to the preset's pixel
multiple, one model step, crop, blend the tiles with linear feathering. The bicubic upsampling is done per tile from
a small LR context window, so no full-size float copy of the upsampled image is ever held: memory is bounded by one
tile plus the output canvas.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from strsr.build import build_generator
from strsr.conditioning import default_conditioning
from strsr.imageio import LoadedImage, image_from_pil
from strsr.model import StrSRGenerator
from strsr.presets import get_preset
from strsr.tiling import Tile, TileBlender, plan_tiles

log = logging.getLogger("strsr")

SCALE = 4
# LR pixels of context around a tile: bicubic x4 reads at most 2 LR pixels beyond the source footprint.
_BICUBIC_CONTEXT = 3


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available")
    return device


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, float32, bfloat16 or float16")
    return names[dtype]


def bundled_weights(preset) -> Path | None:
    """The generator weights shipped inside the package for `preset`, if any."""
    if preset.bundled_weights is None:
        return None
    path = Path(str(resources.files("strsr") / "data" / "weights" / preset.bundled_weights))
    return path if path.is_file() else None


def upsample_region(lr: torch.Tensor, tile: Tile) -> torch.Tensor:
    """Bicubic x4 of `lr` (B, C, h, w), restricted to output `tile`; equals cropping the full upsampled image.

    `tile` coordinates are output pixels and multiples of 4. Values are clamped to [0, 1].
    """
    h, w = lr.shape[-2:]
    top = max(tile.top // SCALE - _BICUBIC_CONTEXT, 0)
    left = max(tile.left // SCALE - _BICUBIC_CONTEXT, 0)
    bottom = min(-(-tile.bottom // SCALE) + _BICUBIC_CONTEXT, h)
    right = min(-(-tile.right // SCALE) + _BICUBIC_CONTEXT, w)
    window = lr[..., top:bottom, left:right]
    up = F.interpolate(window, scale_factor=SCALE, mode="bicubic", align_corners=False)
    y0, x0 = tile.top - top * SCALE, tile.left - left * SCALE
    return up[..., y0 : y0 + tile.height, x0 : x0 + tile.width].clamp(0, 1)


def _pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return image
    # Reflect keeps image statistics at the border; it needs the pad to be smaller than the side.
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


@dataclass(frozen=True)
class UpscaledImage:
    rgb: torch.Tensor  # (3, H, W) float32 in [0, 1]
    alpha: torch.Tensor | None  # (1, H, W) or None
    bit_depth: int
    grayscale: bool

    def to_pil(self) -> Image.Image:
        array = (self.rgb.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        if self.grayscale:
            return Image.fromarray(array[..., 0], mode="L")
        if self.alpha is not None:
            alpha = (self.alpha[0].numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
            array = np.concatenate([array, alpha[..., None]], axis=-1)
        return Image.fromarray(array)


class SuperResolver:
    """x4 super-resolution with a StrSR generator, tile by tile.

        resolver = SuperResolver.from_preset("tiny")
        big = resolver(Image.open("photo.png"))            # PIL in, PIL out
        out = resolver.upscale_tensor(lr)                   # (B, 3, h, w) in [0, 1] -> (B, 3, 4h, 4w)
    """

    def __init__(self, model: StrSRGenerator, *, tile: int = 1024, overlap: int = 64, weights_are_random=False):
        multiple = model.preset.latents.pixel_multiple
        if tile % multiple or tile <= 0:
            raise ValueError(f"tile size {tile} must be a positive multiple of {multiple}")
        if overlap % SCALE or not 0 <= overlap < tile:
            raise ValueError(f"overlap {overlap} must be a multiple of {SCALE} in [0, tile)")
        self.model = model.eval()
        self.tile = tile
        self.overlap = overlap
        self.weights_are_random = weights_are_random

    @classmethod
    def from_preset(
        cls,
        preset: str = "tiny",
        *,
        pretrained: str | Path | None = None,
        checkpoint: str | Path | None = None,
        random_weights: bool = False,
        conditioning: str | None = None,
        prompt: str = "",
        vlm: str | Path | None = None,
        text_encoder: str | Path | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        tile: int = 1024,
        overlap: int = 64,
        seed: int = 0,
        attention_backend: str = "sdpa",
    ) -> SuperResolver:
        """`conditioning` None: the preset's default (vlm for full backbones, none for tiny); `vlm` and
        `text_encoder` are local folders for the vlm and text modes."""
        device = resolve_device(device)
        default = default_conditioning(get_preset(preset))
        conditioning = conditioning or default
        if checkpoint is None and pretrained is None and not random_weights and conditioning == default:
            checkpoint = bundled_weights(get_preset(preset))  # the trained tiny model (no prompt) ships with strsr
        model = build_generator(
            preset, pretrained=pretrained, random_weights=random_weights, checkpoint=checkpoint,
            conditioning=conditioning, prompt=prompt, device=device, dtype=resolve_dtype(dtype, device), seed=seed,
            attention_backend=attention_backend, vlm=vlm, text_encoder_dir=text_encoder,
        )  # fmt: skip
        random = checkpoint is None and pretrained is None
        return cls(model, tile=tile, overlap=overlap, weights_are_random=random)

    @classmethod
    def from_export(cls, engine_dir: str | Path, preset: str = "tiny", *, tile: int = 1024, overlap: int = 64,
                    backend: str = "onnx", cuda_graph: bool = False, vlm: str | Path | None = None):  # fmt: skip
        """Run an `strsr-export` folder in ONNX Runtime (`onnx`) or TensorRT (`trt`) with the same tiling and
        blending. `cuda_graph` (TensorRT only) replays a captured graph for repeated tile shapes; `vlm` is the
        Qwen3-VL folder a VLM-conditioned export needs (the VLM runs in PyTorch)."""
        if backend == "trt":
            from strsr.trt_backend import TrtGenerator

            return cls(TrtGenerator(engine_dir, preset, cuda_graph=cuda_graph, vlm=vlm), tile=tile, overlap=overlap)
        if backend != "onnx":
            raise ValueError(f"unknown export backend {backend!r} (onnx or trt)")
        from strsr.onnx_backend import OnnxGenerator

        return cls(OnnxGenerator(engine_dir, preset, vlm=vlm), tile=tile, overlap=overlap)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def restore(self, upsampled: torch.Tensor, condition=None) -> torch.Tensor:
        """One model pass on an upsampled crop (B, 3, H, W) in [0, 1]; pads to the pixel multiple and crops back."""
        h, w = upsampled.shape[-2:]
        padded = _pad_to_multiple(upsampled.to(self.device), self.model.preset.latents.pixel_multiple)
        out = self.model(padded * 2 - 1, condition)
        return ((out[..., :h, :w] + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def upscale_tensor(self, lr: torch.Tensor, progress=None) -> torch.Tensor:
        """(B, 3, h, w) float in [0, 1] -> (B, 3, 4h, 4w) float32 in [0, 1], on the CPU.

        `progress`, if given, is called with the number of tiles once, then once per finished tile.
        """
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an LR batch of shape (B, 3, h, w), got {tuple(lr.shape)}")
        if not lr.is_floating_point():
            raise ValueError(f"expected a float tensor in [0, 1], got {lr.dtype}")
        batch, _, h, w = lr.shape
        height, width = h * SCALE, w * SCALE
        tiles = plan_tiles(height, width, self.tile, self.overlap, align=SCALE)
        condition = self.model.condition_for(lr)  # once per image, not per tile
        blender = TileBlender(batch, 3, height, width, self.overlap)
        if progress is not None:
            progress(len(tiles))
        lr = lr.float()
        for tile in tiles:
            blender.add(tile, self.restore(upsample_region(lr, tile), condition).cpu())
            if progress is not None:
                progress(None)
        return blender.result().clamp(0, 1)

    def upscale_image(self, image: LoadedImage, progress=None) -> UpscaledImage:
        rgb = self.upscale_tensor(image.rgb.unsqueeze(0), progress)[0]
        if image.grayscale:
            rgb = rgb.mean(0, keepdim=True).expand(3, -1, -1)
        alpha = None
        if image.alpha is not None:
            # Alpha is not an image the model knows: plain bicubic, then re-attached.
            alpha = F.interpolate(image.alpha[None].float(), scale_factor=SCALE, mode="bicubic")[0].clamp(0, 1)
        return UpscaledImage(rgb, alpha, image.bit_depth, image.grayscale)

    def __call__(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        """PIL image -> PIL image; (3, h, w) or (B, 3, h, w) tensor in [0, 1] -> tensor of 4x the size."""
        if isinstance(image, Image.Image):
            return self.upscale_image(image_from_pil(image)).to_pil()
        if isinstance(image, torch.Tensor):
            return self.upscale_tensor(image[None])[0] if image.ndim == 3 else self.upscale_tensor(image)
        raise TypeError(f"expected a PIL image or a tensor, got {type(image).__name__}")
