"""One loaded image through the model to the samples its output file gets: the per-image core that strsr-upscale,
`StrSRPipeline` and strsr-app share, so every front end writes the same pixels for the same options.

    options = OutputOptions(outscale=2, ext="auto")
    result = upscale_loaded(pipeline_or_resolver, load_image("a.png"), options, ".png")
    result.save("out/a.png")

The model always runs x4 (the one scale StrSR is trained for); any other `outscale` then resizes the x4 result to
Real-ESRGAN's output size, `(int(w * outscale), int(h * outscale))`, with OpenCV's `cv2.resize` as Real-ESRGAN's
`inference_realesrgan.py` does (its filter: INTER_LANCZOS4, our default "lanczos"). OpenCV resizes 8- and 16-bit
samples with any of 1-4 channels, alpha with the colour, in one call; it is imported only when a resize happens.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from strsr.io.formats import ALPHA_FORMATS, EXTENSIONS, FORMAT_BY_SUFFIX, SIXTEEN_BIT_FORMATS
from strsr.spec import ROUNDING_MODES

if TYPE_CHECKING:  # this module is imported by command-line parsers: no torch or numpy at import time
    import numpy as np

    from strsr.io.images import LoadedImage

log = logging.getLogger("strsr")

SCALE = 4  # what the model computes
# --resize-filter names -> OpenCV interpolation flags (cv2.INTER_*); lanczos is Real-ESRGAN's --outscale filter.
RESIZE_FILTERS = {"lanczos": "INTER_LANCZOS4", "cubic": "INTER_CUBIC", "linear": "INTER_LINEAR", "area": "INTER_AREA",
                  "nearest": "INTER_NEAREST"}  # fmt: skip


class Upscaler(Protocol):
    """What `upscale_loaded` drives: `SuperResolver` and `StrSRPipeline` both have it."""

    def upscale_image(self, image: LoadedImage, progress=None, *, bit_depth: int | None = None, alpha: bool = True,
                      rounding: str = "floor"): ...  # fmt: skip


@dataclass(frozen=True)
class OutputOptions:
    """The per-run output options (strsr-upscale's flags of the same names).

    outscale: final scale over the input (Real-ESRGAN's -s/--outscale); 4 writes the model's output as it is.
    ext: "auto" (the input's format where it can hold the result) or png, jpg, webp, tif.
    suffix: appended to the stem as `<stem>_<suffix>` (Real-ESRGAN's --suffix); "" for none.
    rounding: float to integer samples, "floor" (the official scripts') or "nearest".
    resize_filter: a `RESIZE_FILTERS` name, for outscale != 4.
    """

    outscale: float = 4.0
    ext: str = "auto"
    suffix: str = ""
    rounding: str = "floor"
    resize_filter: str = "lanczos"

    def __post_init__(self) -> None:
        if not (isinstance(self.outscale, (int, float)) and math.isfinite(self.outscale) and self.outscale > 0):
            raise ValueError(f"--outscale {self.outscale!r}: must be a positive number")
        if self.ext not in EXTENSIONS:
            raise ValueError(f"--ext {self.ext!r}: choose from {', '.join(EXTENSIONS)}")
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(f"--rounding {self.rounding!r}: choose from {', '.join(ROUNDING_MODES)}")
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"--resize-filter {self.resize_filter!r}: choose from {', '.join(RESIZE_FILTERS)}")
        if "/" in self.suffix or "\\" in self.suffix:
            raise ValueError(f"--suffix {self.suffix!r}: a suffix cannot contain a path separator")


def output_size(width: int, height: int, outscale: float) -> tuple[int, int]:
    """(width, height) of the output of a `width` x `height` input at `outscale`: Real-ESRGAN's `int(side * outscale)`
    (truncated), at least 1 pixel."""
    if outscale == SCALE:
        return width * SCALE, height * SCALE
    return max(1, int(width * outscale)), max(1, int(height * outscale))


def resize_samples(samples: np.ndarray, width: int, height: int, resize_filter: str = "lanczos") -> np.ndarray:
    """(H, W, C) uint8/uint16 samples, C in 1..4 -> (height, width, C) of the same dtype, by `cv2.resize` with the
    named filter (all channels alike: alpha is resized with the colour, as Real-ESRGAN does)."""
    import cv2

    if resize_filter not in RESIZE_FILTERS:
        raise ValueError(f"unknown resize filter {resize_filter!r}; choose from {', '.join(RESIZE_FILTERS)}")
    if samples.shape[1] == width and samples.shape[0] == height:
        return samples
    resized = cv2.resize(samples, (width, height), interpolation=getattr(cv2, RESIZE_FILTERS[resize_filter]))
    return resized.reshape(height, width, samples.shape[2])  # cv2 drops a single channel's axis


def target_format(image: LoadedImage, suffix: str) -> tuple[int, bool]:
    """(bit depth, keep alpha) of `image` written with `suffix`: 16 bits only for a 16-bit source into PNG/TIFF,
    alpha unless the format is JPEG."""
    fmt = FORMAT_BY_SUFFIX.get(suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported output suffix {suffix!r} (use {', '.join(FORMAT_BY_SUFFIX)})")
    return (image.bit_depth if fmt in SIXTEEN_BIT_FORMATS else 8), fmt in ALPHA_FORMATS


def upscale_loaded(upscaler: Upscaler, image: LoadedImage, options: OutputOptions, suffix: str, progress=None):
    """Upscale one loaded image with the run's `options` into the samples a `suffix` file (".png", ".jpg", ...) is
    written with: an `UpscaledImage` whose `samples` are (H, W, C) uint8/uint16 at `output_size(...)`, C = 1 (grey),
    2 (grey + alpha), 3 or 4; `.save(path)` writes it atomically, `.to_pil()` gives a Pillow image (8-bit only).

    The model runs x4 tile by tile (`progress(total)` once, then `progress(None)` per tile); with outscale != 4 the x4
    samples are resized by `resize_samples` with `options.resize_filter`. Bit depth and alpha follow
    `target_format` (an alpha channel that JPEG cannot store is dropped with a warning). Raises ValueError for an
    output over strsr's pixel limit or an unknown suffix, before any model work.
    """
    from strsr.inference.pipeline import MAX_OUTPUT_PIXELS, UpscaledImage, check_output_size

    width, height = output_size(image.width, image.height, options.outscale)
    if width * height > MAX_OUTPUT_PIXELS:
        raise ValueError(f"a {image.width}x{image.height} image at outscale {options.outscale:g} is {width}x{height} "
                         f"= {width * height:,} pixels, above strsr's limit of {MAX_OUTPUT_PIXELS:,}")  # fmt: skip
    check_output_size(image.height * SCALE, image.width * SCALE)
    bit_depth, keep_alpha = target_format(image, suffix)
    if image.alpha is not None and not keep_alpha:
        log.warning("%s: %s cannot store alpha; alpha dropped", image.source, FORMAT_BY_SUFFIX[suffix.lower()])
    result = upscaler.upscale_image(image, progress, bit_depth=bit_depth, alpha=keep_alpha, rounding=options.rounding)
    if (width, height) != (image.width * SCALE, image.height * SCALE):
        result = UpscaledImage(resize_samples(result.samples, width, height, options.resize_filter))
    return result


def upscale_file(upscaler: Upscaler, source: Path, target: Path, options: OutputOptions, progress=None):
    """One file through `upscale_loaded` into `target` (written atomically), as every front end writes it: loaded
    within strsr's input pixel limit, `progress` as for `upscale_loaded`. Returns the `UpscaledImage`."""
    from strsr.inference.pipeline import MAX_INPUT_PIXELS
    from strsr.io.images import load_image

    result = upscale_loaded(upscaler, load_image(source, max_pixels=MAX_INPUT_PIXELS), options, target.suffix,
                            progress)  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    result.save(target)
    return result


def failure_line(source: Path, err: Exception) -> str:
    """One line for a failed image: an image error names its file itself; a ValueError is an image the model cannot
    take (e.g. too elongated for the VLM); a RuntimeError is e.g. out of memory on one huge image."""
    from strsr.io.images import ImageError

    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, ImageError):
        return first
    return f"{source}: failed ({first})" if isinstance(err, RuntimeError) else f"{source}: {first}"


def output_name(source: Path, options: OutputOptions) -> str:
    """The file name `source` alone gets under `options` (strsr-upscale's rule without clash handling; see
    `strsr.io.outputs.plan_upscale_outputs` for a batch): `<stem>[_<suffix>]<ext>`."""
    from strsr.io.outputs import auto_suffix

    ext = auto_suffix(source) if options.ext == "auto" else f".{options.ext}"
    return f"{source.stem}{'_' + options.suffix if options.suffix else ''}{ext}"
