"""Read and write images as float tensors, with one-line errors that name the file.

Everything the CLI and the pipeline touch on disk goes through here: ``load_image`` turns any
supported file into a (3, H, W) float32 tensor in [0, 1] plus an optional (1, H, W) alpha, and
remembers the source bit depth and whether it had colour, so ``save_image`` can write the result
back in kind. ``find_images`` expands the CLI's file/folder arguments.

Library choices for 16-bit samples (checked with Pillow 13, torchvision 0.29, tifffile 2026.3):

* Pillow decodes 16-bit grayscale PNG/TIFF exactly (modes ``I;16*`` / ``I``) and writes 16-bit
  grayscale PNG and TIFF, but it has no 16-bit colour mode: 16-bit RGB(A) and grey+alpha PNG/TIFF
  open as 8-bit (the high byte), and 16-bit grey+alpha TIFF does not open at all. ``load_image``
  therefore decodes those files itself, PNG with ``torchvision.io.decode_png`` (torchvision is a
  declared dependency) and TIFF with ``tifffile``. If that decoder is missing or fails (tifffile not
  installed, or a compression such as LZW that needs ``imagecodecs``), it logs a warning and keeps
  Pillow's 8-bit decode, reporting bit_depth 8.
* Pillow cannot write 16-bit colour PNG (torchvision's ``encode_png`` takes uint8 only, imageio goes
  through Pillow): such PNGs are written with pypng (pure Python, a declared dependency); 16-bit
  colour TIFF is written with ``tifffile``.
* ``tifffile`` is imported only on those 16-bit TIFF paths, so everything else works without it.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from strsr.io.atomic import atomic_write
from strsr.io.formats import FORMAT_BY_SUFFIX as _FORMAT_BY_SUFFIX
from strsr.io.formats import SUFFIX_ORDER as _SUFFIX_ORDER
from strsr.spec import ROUNDING_MODES  # floor: the official scripts' (ToPILImage: x * 255 truncated); nearest

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageError",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "find_images",
    "image_from_pil",
    "ROUNDING_MODES",
    "load_image",
    "quantize",
    "save_image",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset(_SUFFIX_ORDER)

# ITU-R BT.601 luma weights, as PIL and torchvision convert colour to grey (and JPEG's Y channel).
BT601_LUMA = (0.299, 0.587, 0.114)

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"})
_EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An image could not be read or written; the message is ``"<path>: <reason>"`` on one line."""


class ImageReadError(ImageError):
    """A file is missing, not an image, truncated, corrupt, or of an unsupported kind."""


class ImageWriteError(ImageError):
    """An image could not be written (bad target, format limit, or an OS error)."""


@dataclass(frozen=True, eq=False)  # eq=False: a field-wise __eq__ on tensors is ambiguous
class LoadedImage:
    """A decoded image.

    rgb: (3, H, W) float32 in [0, 1]; grayscale sources are replicated to 3 channels.
    alpha: (1, H, W) float32 in [0, 1], or None when the source has no transparency.
    bit_depth: 8 or 16, the precision rgb/alpha were decoded at (16 only for 16-bit sources).
    grayscale: True when the source had no colour (modes 1, L, LA, I;16, I). Palette images count as colour.
    source: the path it was read from, or ``"<memory>"``.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    bit_depth: int
    grayscale: bool
    source: str

    def __post_init__(self) -> None:
        if self.rgb.dtype != torch.float32 or self.rgb.ndim != 3 or self.rgb.shape[0] != 3:
            raise ValueError(f"rgb must be (3, H, W) float32, got {tuple(self.rgb.shape)} {self.rgb.dtype}")
        if self.alpha is not None and tuple(self.alpha.shape) != (1, *self.rgb.shape[1:]):
            raise ValueError(f"alpha must be (1, H, W) matching rgb, got {tuple(self.alpha.shape)}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def height(self) -> int:
        return self.rgb.shape[1]

    @property
    def width(self) -> int:
        return self.rgb.shape[2]


# ----------------------------------------------------------------------------------------------- reading


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> LoadedImage:
    """Decode the first frame of an image file, upright (EXIF orientation applied). The file is only read.

    Raises ImageReadError for a missing path, a folder, an empty file, a non-image, a truncated or
    corrupt file, a zero-size image, and one of more than `max_pixels` pixels (checked from the header,
    before anything is decoded).
    """
    name = os.fspath(path)
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{name}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{name}: is a folder, not an image file")
    try:
        if p.stat().st_size == 0:
            raise ImageReadError(f"{name}: empty file (0 bytes)")
        # The context manager closes the file; Pillow opens lazily, so decoding happens inside it.
        with Image.open(p) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageReadError(f"{name}: {im.width}x{im.height} is too large (over {max_pixels:,} pixels)")
            loaded = _load_16bit_colour(p, im.format, name) if _has_16bit_colour(p, im) else None
            if loaded is None:
                loaded = image_from_pil(im, source=name)
    except UnidentifiedImageError:
        loaded = _load_tiff_pillow_cannot_open(p, name)
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{name}: image too large ({e})") from None
    except OSError as e:
        raise ImageReadError(f"{name}: cannot read ({e.strerror or e})") from None
    return loaded


def image_from_pil(image: Image.Image, source: str = "<memory>") -> LoadedImage:
    """Convert a Pillow image (its current frame, EXIF orientation applied) into a LoadedImage.

    16-bit colour images come through at 8-bit precision (Pillow has no 16-bit colour mode) and
    report bit_depth 8; ``load_image`` decodes such files at full precision.
    """
    try:
        image.load()  # decode fully here so truncated and corrupt data fail with a clear message
        upright = ImageOps.exif_transpose(image)
    # struct.error escapes Pillow's EXIF parser on malformed tags.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise ImageReadError(f"{source}: truncated or corrupt image ({_one_line(e)})") from None
    _check_size(upright.height, upright.width, source)

    grayscale = upright.mode in _GRAY_MODES
    samples, bit_depth = _samples(upright, source)  # (H, W, C) uint8 or uint16
    peak = 65535.0 if bit_depth == 16 else 255.0
    chw = torch.from_numpy(np.ascontiguousarray(samples.transpose(2, 0, 1), dtype=np.float32) / np.float32(peak))
    return _split(chw, bit_depth, grayscale, source)


def _split(chw: torch.Tensor, bit_depth: int, grayscale: bool, source: str) -> LoadedImage:
    """(C, H, W) float32 planes, C in {1 grey, 2 grey+alpha, 3 RGB, 4 RGBA} -> LoadedImage."""
    num_colour = 1 if chw.shape[0] in (1, 2) else 3
    rgb = chw[:1].expand(3, -1, -1).clone() if num_colour == 1 else chw[:3].clone()
    alpha = chw[num_colour:].clone() if chw.shape[0] > num_colour else None
    return LoadedImage(rgb=rgb, alpha=alpha, bit_depth=bit_depth, grayscale=grayscale, source=source)


def _check_size(height: int, width: int, source: str) -> None:
    if height == 0 or width == 0:
        raise ImageReadError(f"{source}: image has zero width or height ({width}x{height})")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _samples(image: Image.Image, source: str) -> tuple[np.ndarray, int]:
    """Normalise a Pillow image to (H, W, C) samples, C in {1 grey, 2 grey+alpha, 3 RGB, 4 RGBA}.

    Returns the array (uint8, or uint16 for 16-bit grey) and its bit depth.
    """
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)[..., None], 16
    if mode == "I":
        # 32-bit signed container; Pillow uses it for 16-bit grey from some encoders.
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)[..., None], 16
    if mode == "F":
        raise ImageReadError(f"{source}: unsupported pixel mode F (32-bit float samples have no fixed range)")
    if mode in ("1", "L", "LA", "La"):
        wanted = "LA" if mode in ("LA", "La") or image.has_transparency_data else "L"
    elif mode in ("RGBA", "RGBa", "PA") or image.has_transparency_data:
        # Palette and RGB images with a transparency key become RGBA so the key is not lost.
        wanted = "RGBA"
    else:  # RGB, RGBX, P, CMYK, YCbCr, LAB, HSV
        wanted = "RGB"
    converted = image if image.mode == wanted else image.convert(wanted)
    samples = np.asarray(converted)
    if samples.ndim == 2:
        samples = samples[..., None]
    return samples, 8


def _has_16bit_colour(path: Path, image: Image.Image) -> bool:
    """True for multi-channel 16-bit PNG/TIFF, which Pillow decodes only at 8-bit precision."""
    if image.format == "PNG":
        with path.open("rb") as f:
            head = f.read(26)
        # IHDR is the first chunk: bytes 24 and 25 are bit depth and colour type (2 RGB, 4 GA, 6 RGBA).
        return head[:8] == _PNG_SIGNATURE and len(head) == 26 and head[24] == 16 and head[25] in (2, 4, 6)
    if image.format == "TIFF":
        tags = image.tag_v2
        bits, sample_format = tags.get(258, (1,)), tags.get(339, (1,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        sample_format = sample_format if isinstance(sample_format, tuple) else (sample_format,)
        # Photometric 1 is grey (plus alpha), 2 RGB; CMYK and others stay with Pillow.
        multi_channel = tags.get(277, 1) > 1 and tags.get(262) in (1, 2)
        return multi_channel and all(b == 16 for b in bits) and all(s == 1 for s in sample_format)
    return False


def _load_16bit_colour(path: Path, fmt: str, name: str) -> LoadedImage | None:
    """Decode a 16-bit colour PNG/TIFF at full precision, or None (after a warning) if no decoder can."""
    try:
        chw, orientation = _decode_png_16bit(path) if fmt == "PNG" else _decode_tiff_16bit(path)
    except Exception as e:  # ImportError, codec missing, corrupt data: Pillow's 8-bit decode is the fallback
        logger.warning("%s: cannot decode 16-bit colour at full precision (%s); reading 8-bit", name, _one_line(e))
        return None
    return _from_16bit(chw, orientation, name)


def _load_tiff_pillow_cannot_open(path: Path, name: str) -> LoadedImage:
    """Pillow has no mode for some TIFF layouts (16-bit grey+alpha); tifffile may still read them."""
    not_readable = ImageReadError(f"{name}: not a readable image (cannot identify image file)")
    with path.open("rb") as f:
        if f.read(4) not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF magic
            raise not_readable
    try:
        chw, orientation = _decode_tiff_16bit(path)
    except Exception:
        raise not_readable from None
    return _from_16bit(chw, orientation, name)


def _from_16bit(chw: np.ndarray, orientation: int, name: str) -> LoadedImage:
    """(C, H, W) uint16 as stored, plus its EXIF orientation -> upright LoadedImage."""
    _check_size(chw.shape[1], chw.shape[2], name)
    planes = _orient(torch.from_numpy(chw.astype(np.float32) / np.float32(65535.0)), orientation)
    return _split(planes, 16, chw.shape[0] == 2, name)


def _decode_png_16bit(path: Path) -> tuple[np.ndarray, int]:
    """(C, H, W) uint16 samples and EXIF orientation of a 16-bit PNG, via torchvision (libpng)."""
    # Deferred import: torchvision is heavy and only this path needs it. torchvision 0.29 deprecates its
    # image codecs in favour of torchcodec (not a dependency); revisit when decode_png goes away.
    from torchvision.io import ImageReadMode, decode_png, read_file

    chw = decode_png(read_file(str(path)), ImageReadMode.UNCHANGED).numpy()
    with Image.open(path) as im:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    return chw.astype(np.uint16), orientation


def _decode_tiff_16bit(path: Path) -> tuple[np.ndarray, int]:
    """(C, H, W) uint16 samples (alpha un-premultiplied) and orientation of a TIFF's first page, via tifffile."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        data = page.asarray()
        planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
        associated = tuple(page.extrasamples)[:1] == (tifffile.EXTRASAMPLE.ASSOCALPHA,)
        orientation_tag = page.tags.get(274)
        orientation = int(orientation_tag.value) if orientation_tag is not None else 1
    if data.dtype != np.uint16 or data.ndim != 3:
        raise ValueError(f"unsupported TIFF layout {data.dtype} {data.shape}")
    chw = data if planar else np.moveaxis(data, -1, 0)  # (C, H, W)
    if not 2 <= chw.shape[0] <= 4:
        raise ValueError(f"unsupported TIFF layout with {chw.shape[0]} channels")
    if associated:
        # Premultiplied alpha: divide it back out so rgb means the same as for other formats.
        colour, alpha = chw[:-1].astype(np.float64), chw[-1:].astype(np.float64)
        unmultiplied = np.divide(colour * 65535.0, alpha, out=np.zeros_like(colour), where=alpha > 0)
        chw = np.concatenate([np.clip(np.rint(unmultiplied), 0, 65535), alpha]).astype(np.uint16)
    return np.ascontiguousarray(chw), orientation


def _orient(chw: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a (C, H, W) tensor the way ``ImageOps.exif_transpose`` does."""
    if orientation == 2:
        return chw.flip(-1)
    if orientation == 3:
        return chw.flip(-2, -1)
    if orientation == 4:
        return chw.flip(-2)
    if orientation == 5:
        return chw.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(chw, -1, dims=(-2, -1))  # 90 degrees clockwise
    if orientation == 7:
        return chw.flip(-2, -1).transpose(-2, -1)
    if orientation == 8:
        return torch.rot90(chw, 1, dims=(-2, -1))  # 90 degrees counter-clockwise
    return chw


# ----------------------------------------------------------------------------------------------- writing


def quantize(planes: np.ndarray, bit_depth: int = 8, rounding: str = "floor") -> np.ndarray:
    """Float samples in [0, 1] (any shape) -> uint8 (bit_depth 8) or uint16 (16), by `rounding` (ROUNDING_MODES)."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding {rounding!r}; choose from {', '.join(ROUNDING_MODES)}")
    peak = 65535.0 if bit_depth == 16 else 255.0
    clipped = np.clip(planes, 0.0, 1.0)
    if rounding == "floor":  # in float32, as torchvision's `pic.mul(255).byte()`
        scaled = np.floor(clipped.astype(np.float32) * np.float32(peak))
    else:
        scaled = np.rint(clipped.astype(np.float64) * peak)
    return scaled.astype(np.uint16 if bit_depth == 16 else np.uint8)


def save_image(
    path: str | os.PathLike,
    rgb: torch.Tensor,
    alpha: torch.Tensor | None = None,
    *,
    bit_depth: int = 8,
    grayscale: bool = False,
    rounding: str = "floor",
) -> None:
    """Write an image atomically; the format comes from the suffix (.png, .jpg/.jpeg, .webp, .tif/.tiff).

    rgb: (3, H, W) float in [0, 1] on any device (clamped, then made integers by `rounding`: "floor", as the
        official scripts save, or "nearest").
    alpha: (1, H, W) float in [0, 1] or None; stored as an alpha channel (JPEG cannot: error).
    bit_depth: 8, or 16 for PNG/TIFF; JPEG and WebP reject 16.
    grayscale: write one channel: the first channel if all three are equal, else BT.601 luma.

    Raises ImageWriteError naming the path and the reason (see `write_samples`).
    """
    name = os.fspath(path)
    _format(path, bit_depth, alpha is not None)
    channels = _channels(name, rgb, alpha, grayscale)  # (C, H, W) float64 in [0, 1]
    write_samples(path, quantize(channels, bit_depth, rounding).transpose(1, 2, 0))


def write_samples(path: str | os.PathLike, samples: np.ndarray) -> None:
    """Write (H, W, C) uint8/uint16 samples (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) atomically: to a hidden
    temporary file in the target folder, which then replaces `path`; on failure `path` is untouched. The folder
    must exist. Raises ImageWriteError naming the path and the reason."""
    name = os.fspath(path)
    if samples.ndim != 3 or samples.shape[2] not in (1, 2, 3, 4) or samples.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"{name}: samples must be (H, W, 1..4) uint8 or uint16, got {samples.shape} "
                              f"{samples.dtype}")  # fmt: skip
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise ImageWriteError(f"{name}: image has zero width or height")
    fmt = _format(path, 16 if samples.dtype == np.uint16 else 8, samples.shape[2] in (2, 4))
    folder = Path(path).parent
    if not folder.is_dir():
        raise ImageWriteError(f"{name}: folder {os.fspath(folder)} does not exist")

    def encode(tmp: str) -> None:
        with open(tmp, "wb") as f:
            _encode(f, samples, fmt)

    try:
        atomic_write(Path(path), encode, mode=0o644)
    except Exception as e:  # KeyboardInterrupt passes through (atomic_write has removed the partial file)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else _one_line(e)
        raise ImageWriteError(f"{name}: cannot write ({reason})") from None


def _format(path: str | os.PathLike, bit_depth: int, has_alpha: bool) -> str:
    """The Pillow format name for `path`'s suffix, refusing what that format cannot store."""
    name, suffix = os.fspath(path), Path(path).suffix
    fmt = _FORMAT_BY_SUFFIX.get(suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"{name}: unsupported suffix {suffix!r} (use {', '.join(_SUFFIX_ORDER)})")
    if bit_depth not in (8, 16):
        raise ImageWriteError(f"{name}: bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt in ("JPEG", "WEBP"):
        raise ImageWriteError(f"{name}: {fmt} cannot store 16-bit samples (use .png or .tif, or bit_depth=8)")
    if has_alpha and fmt == "JPEG":
        raise ImageWriteError(f"{name}: JPEG cannot store alpha (transparency); use .png, .webp or .tif")
    return fmt


def _channels(name: str, rgb: torch.Tensor, alpha: torch.Tensor | None, grayscale: bool) -> np.ndarray:
    """Validate and stack the planes to write: (C, H, W) float64 in [0, 1], C in {1, 2, 3, 4}."""
    if not isinstance(rgb, torch.Tensor) or rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ImageWriteError(f"{name}: rgb must be a (3, H, W) tensor, got {tuple(getattr(rgb, 'shape', ()))}")
    if rgb.shape[1] == 0 or rgb.shape[2] == 0:
        raise ImageWriteError(f"{name}: image has zero width or height")
    colour = rgb.detach().to("cpu", torch.float64)
    if alpha is not None and (not isinstance(alpha, torch.Tensor) or tuple(alpha.shape) != (1, *rgb.shape[1:])):
        raise ImageWriteError(f"{name}: alpha must be (1, H, W) matching rgb, got {tuple(alpha.shape)}")
    planes = [colour] if alpha is None else [colour, alpha.detach().to("cpu", torch.float64)]
    if not all(torch.isfinite(p).all() for p in planes):
        raise ImageWriteError(f"{name}: image has NaN or infinite values")
    if grayscale:
        if torch.equal(colour[0], colour[1]) and torch.equal(colour[0], colour[2]):
            grey = colour[:1]
        else:
            weights = torch.tensor(BT601_LUMA, dtype=torch.float64).view(3, 1, 1)
            grey = (colour * weights).sum(0, keepdim=True)
        planes[0] = grey
    return torch.cat(planes).clamp(0.0, 1.0).numpy()


def _encode(f: BinaryIO, samples: np.ndarray, fmt: str) -> None:
    """Encode (H, W, C) uint8/uint16 samples into the open binary file ``f``."""
    num_channels = samples.shape[2]
    if samples.dtype == np.uint16 and num_channels > 1 and fmt == "PNG":  # Pillow has no 16-bit colour mode
        import png  # pypng

        height, width = samples.shape[:2]
        writer = png.Writer(width, height, greyscale=num_channels == 2, alpha=num_channels in (2, 4), bitdepth=16)
        writer.write(f, samples.reshape(height, width * num_channels))
        return
    if samples.dtype == np.uint16 and num_channels > 1:  # TIFF
        import tifffile

        photometric = "minisblack" if num_channels == 2 else "rgb"
        extrasamples = ["unassalpha"] if num_channels in (2, 4) else None
        tifffile.imwrite(f, samples, photometric=photometric, extrasamples=extrasamples, metadata=None)
        return
    if samples.dtype == np.uint16:
        image = Image.fromarray(samples[..., 0])  # mode I;16, which Pillow writes as 16-bit PNG/TIFF
    else:
        # Pillow infers L, LA, RGB or RGBA from the uint8 array's shape.
        image = Image.fromarray(samples[..., 0] if num_channels == 1 else samples)
    if fmt == "JPEG":
        # Outputs of a restoration model: high quality and no chroma subsampling, which would blur colour edges.
        image.save(f, format="JPEG", quality=95, subsampling=0)
    elif fmt == "WEBP":
        # Lossless (exact keeps colour under transparent pixels) so saving adds no second round of artefacts.
        image.save(f, format="WEBP", lossless=True, exact=True)
    else:
        image.save(f, format=fmt)


# ----------------------------------------------------------------------------------------------- finding


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a list of image paths.

    A file is kept whatever its suffix (``load_image`` reports it if it is not an image). A folder
    contributes its image files by suffix (case-insensitive), recursively, sorted, skipping hidden
    files and hidden subfolders. Duplicates (same resolved file) are dropped, first occurrence kept.
    Raises ImageReadError for a missing path or a folder without images.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            candidates = _images_in_folder(p)
            if not candidates:
                raise ImageReadError(f"{os.fspath(item)}: folder has no images ({', '.join(_SUFFIX_ORDER)})")
        elif p.exists():
            candidates = [p]
        else:
            raise ImageReadError(f"{os.fspath(item)}: no such file or folder")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def _images_in_folder(folder: Path) -> list[Path]:
    images = []
    # os.walk without followlinks: a symlink loop cannot make this run forever.
    for root, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prune hidden folders in place
        for filename in filenames:
            if not filename.startswith(".") and Path(filename).suffix.lower() in IMAGE_SUFFIXES:
                images.append(Path(root, filename))
    return sorted(images)
