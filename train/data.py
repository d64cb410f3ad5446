"""Training images: folders, JSONL file lists and scikit-image's bundled photos, cropped to the recipe's resolution.

Crops (`data.crop`), on the 8-bit RGB image as the official StrSR dataset (guided-diffusion's crop functions) does:
- "center": the short side is brought to the crop size R (halved with a box filter while it is at least 2R, then
  one bicubic resize, sides rounded), then the centre R x R. Images smaller than R are upscaled the same way.
- "random": the same resize to a short side drawn uniformly from [R, ceil(R / 0.7)] (the official
  `random_crop_arr(min_crop_frac=0.7)`), then a uniformly placed R x R window.
- "patch": a uniformly placed R x R window of the full-resolution image, no resize (strsr's tiny recipe, where a
  handful of photos give many patches); images smaller than R are skipped.
Resizes are Pillow's BOX and BICUBIC, as the official code's. Images are turned upright by their EXIF orientation
first (the official code does not), and 16-bit sources are rounded to 8 bits (Pillow's RGB conversion, which the
official code uses, keeps their high byte).

Pinned images (`data.images`): files that pip or Debian packages install, each with its sha256. Every one is
checked before training starts: a missing file names the package to install, another sha256 names the file (a
different package version would silently train on other pixels). With `data.max_short_side`, larger photos are
first brought to that short side by the official resize (wallpapers of 2560-6000 px are otherwise mostly blur at
the crop size).

Sampling is a pure function of (seed, sample index): which image, which crop and whether it is flipped are derived
from the global sample position, so a resumed run sees exactly the batches the uninterrupted run would have, with
no loader state to save. Unreadable (or, for "patch", too small) images are skipped with a warning and counted; a
run never dies on one bad file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from strsr.io.images import ImageError, find_images, image_from_pil, load_image
from strsr.train.config import DataConfig, TrainingImage

log = logging.getLogger("strsr.train")

_MAX_SKIPS = 64  # consecutive bad images tolerated before a batch gives up
CROPS = ("center", "random", "patch")
RANDOM_MIN_CROP_FRACTION = 0.7  # the official dataset's `random_crop_arr(min_crop_frac=0.7)`


class DatasetError(ValueError):
    """The configured data yields no usable image; the message says where it looked."""


def list_sources(config: DataConfig) -> list[str]:
    """Every training image as a string key: a file path, or `skimage:<name>`."""
    sources: list[str] = []
    for folder in config.folders:
        try:
            sources += [str(p) for p in find_images([folder])]
        except ImageError as err:
            raise DatasetError(str(err)) from None
    for file_list in config.file_lists:
        sources += _read_file_list(Path(file_list), config.path_key)
    for name in config.skimage_images:
        sources.append(f"skimage:{name}")
    sources += [str(path) for path in pinned_image_paths(config.images)]
    if not sources:
        raise DatasetError("no training images found in data.folders, data.file_lists or data.skimage_images")
    return sources


def image_path(image: TrainingImage) -> Path:
    """Where `image` is installed: under its pip distribution, or the absolute path its Debian package installs."""
    if image.source == "debian":
        return Path(image.path)
    try:
        return Path(metadata.distribution(image.package).locate_file(image.path))
    except metadata.PackageNotFoundError:
        raise DatasetError(f"training image {image.path}: the pip package {image.package} is not installed "
                           f"(pip install {image.package})") from None  # fmt: skip


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pinned_image_paths(images: list[TrainingImage]) -> list[Path]:
    """The files of `images`, each checked against its sha256; DatasetError naming what to install or which file
    differs. Missing Debian files are gathered into one message with the apt-get line."""
    paths, missing = [], {}
    for image in images:
        path = image_path(image)
        if not path.is_file():
            missing.setdefault((image.source, image.package), []).append(image.path)
            continue
        got = file_sha256(path)
        if got != image.sha256:
            raise DatasetError(f"{path}: sha256 {got} is not the recipe's {image.sha256} (another version of "
                               f"{image.package}?)")  # fmt: skip
        paths.append(path)
    if missing:
        count = sum(len(v) for v in missing.values())
        debs = sorted(pkg for source, pkg in missing if source == "debian")
        pips = sorted(pkg for source, pkg in missing if source == "pip")
        how = "; ".join(part for part in (debs and f"apt-get install {' '.join(debs)}",
                                          pips and f"pip install --force-reinstall {' '.join(pips)}") if part)
        raise DatasetError(f"{count} training images are missing (first: {next(iter(missing.values()))[0]}); they "
                           f"come from the packages {', '.join(debs + pips)}: {how}")  # fmt: skip
    return paths


def _read_file_list(path: Path, key: str) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: file list not found")
    paths = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            value = entry[key]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DatasetError(f"{path}:{number}: expected a JSON object with a {key!r} key") from None
        resolved = Path(value) if Path(value).is_absolute() else path.parent / value
        paths.append(str(resolved))
    return paths


def _load(source: str) -> torch.Tensor:
    """(3, H, W) uint8 RGB."""
    if source.startswith("skimage:"):
        from skimage import data

        name = source.removeprefix("skimage:")
        loader = getattr(data, name, None)
        if loader is None:
            raise ImageError(f"{source}: scikit-image has no photo called {name!r}")
        array = loader()
        if isinstance(array, tuple):  # stereo pairs come as (left, right, disparity): take the left view
            array = array[0]
        array = np.asarray(array)
        rgb = image_from_pil(Image.fromarray(array), source).rgb
    else:
        rgb = load_image(source).rgb
    return (rgb * 255).round().to(torch.uint8)


def resize_short_side(image: Image.Image, short: int) -> Image.Image:
    """The official (guided-diffusion) resize of a Pillow image to a short side of `short` px: box-filter halvings
    (sides floored) while the short side is at least 2 * short, then bicubic to sides round(side * short / min)."""
    while min(image.size) >= 2 * short:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.Resampling.BOX)
    scale = short / min(image.size)
    return image.resize(tuple(round(side * scale) for side in image.size), resample=Image.Resampling.BICUBIC)


def official_crop(image: torch.Tensor, size: int, crop: str, generator: torch.Generator) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size) uint8 by the "center" or "random" rule (module docstring); `generator`
    draws the random short side and window."""
    pil = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    short = size
    if crop == "random":
        lo, hi = math.ceil(size / 1.0), math.ceil(size / RANDOM_MIN_CROP_FRACTION)
        short = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    array = np.array(resize_short_side(pil, short))  # (h, w, 3), writable
    height, width = array.shape[:2]
    if crop == "random":
        top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    else:
        top, left = (height - size) // 2, (width - size) // 2
    return torch.from_numpy(np.ascontiguousarray(array[top : top + size, left : left + size])).permute(2, 0, 1)


@dataclass
class Batch:
    hr: torch.Tensor  # (B, 3, R, R) float32 in [0, 1], multiples of 1/255
    skipped: int  # bad images passed over while building it


class CropSampler:
    """Deterministic crops: `batch(step, rank, world, batch_size)` gives the same pixels on every run."""

    def __init__(self, config: DataConfig, seed: int):
        self.config = config
        self.seed = seed
        self.sources = list_sources(config)
        self._cache: dict[str, torch.Tensor] = {}
        self._bad: set[str] = set()

    def __len__(self) -> int:
        return len(self.sources)

    def _image(self, source: str) -> torch.Tensor:
        if len(self.sources) <= 64:  # small sets (the tiny recipe): decode each photo once
            if source not in self._cache:
                self._cache[source] = self._decode(source)
            return self._cache[source]
        return self._decode(source)

    def _decode(self, source: str) -> torch.Tensor:
        image = _load(source)
        short = self.config.max_short_side
        if short is None or min(image.shape[-2:]) <= short:
            return image
        pil = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
        return torch.from_numpy(np.array(resize_short_side(pil, short))).permute(2, 0, 1).contiguous()

    def _pick(self, slot: int, attempt: int) -> str:
        """Slot `slot` walks a fresh permutation each epoch; retries after a bad image pick at random."""
        if attempt:
            gen = torch.Generator().manual_seed(hash((self.seed, slot, attempt)) & 0x7FFF_FFFF)
            return self.sources[int(torch.randint(len(self.sources), (1,), generator=gen))]
        epoch, offset = divmod(slot, len(self.sources))
        order = torch.randperm(len(self.sources), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        return self.sources[int(order[offset])]

    def _sample(self, slot: int, attempt: int) -> tuple[torch.Tensor | None, str]:
        source = self._pick(slot, attempt)
        if source in self._bad:
            return None, source
        try:
            image = self._image(source)
        except ImageError as err:
            log.warning("skipping training image: %s", err)
            self._bad.add(source)
            return None, source
        size = self.config.resolution
        height, width = image.shape[-2:]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + slot)
        if self.config.crop != "patch":
            crop = official_crop(image, size, self.config.crop, gen)
        elif min(height, width) < size:
            log.warning("skipping training image: %s: %dx%d is smaller than the %d crop", source, width, height, size)
            self._bad.add(source)
            return None, source
        else:
            top = int(torch.randint(0, height - size + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - size + 1, (1,), generator=gen))
            crop = image[:, top : top + size, left : left + size]
        if self.config.flip and torch.rand((), generator=gen) < 0.5:
            crop = crop.flip(-1)
        return crop.float() / 255, source

    def batch(self, index: int, rank: int, world: int, batch_size: int) -> Batch:
        """The `rank`'s share of global batch `index`; a bad image is replaced by a random other one."""
        crops, skipped = [], 0
        for i in range(batch_size):
            slot = (index * world + rank) * batch_size + i
            for attempt in range(_MAX_SKIPS + 1):
                crop, source = self._sample(slot, attempt)
                if crop is not None or len(self._bad) == len(self.sources):
                    break
                skipped += 1
            if crop is None:
                raise DatasetError(f"no usable training image (last tried: {source}); see the warnings above")
            crops.append(crop)
        return Batch(torch.stack(crops), skipped)
