"""Image file formats by suffix: what strsr reads and writes, and what each format can store. Plain data, no torch,
so command-line parsers can offer the choices without importing PyTorch."""

from __future__ import annotations

# Ordered for messages; IMAGE_SUFFIXES (strsr.io.images) is the set used for matching.
SUFFIX_ORDER = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
# Pillow's format name for each suffix.
FORMAT_BY_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
# strsr-upscale --ext: "auto" (the input's own format where it can hold the result) or one format for every output.
EXTENSIONS = ("auto", "png", "jpg", "webp", "tif")
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})  # JPEG and WebP store 8-bit samples only
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})  # JPEG has no alpha channel
