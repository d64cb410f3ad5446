"""What one press of the app's button does, without gradio: build (or reuse) the resolver the page's settings
describe, upscale each uploaded file as `strsr-upscale` does, and report failures with strsr-upscale's one-line
messages (naming the file by its uploaded name, not by the server's temporary path).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from strsr.inference.pipeline import SuperResolver
from strsr.inference.upscale import OutputOptions, failure_line
from strsr.inference.upscale import upscale_file as _upscale_file
from strsr.io.images import ImageError, load_image, quantize
from strsr.io.outputs import plan_upscale_outputs
from strsr.model.checkpoint import CheckpointError
from strsr.spec import ModelSpec

log = logging.getLogger("strsr")

RANDOM_WEIGHTS_WARNING = ("weights are random (preset {preset!r}, no trained checkpoint): the output shows the "
                          "pipeline working, not real super-resolution")  # fmt: skip
_KEPT_RUNS = 16  # finished runs whose files stay on disk (the page may still show or offer them)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is running)


class RunError(ValueError):
    """The whole run cannot start (bad settings, missing weights, no input); the message is one line."""


@dataclass(frozen=True)
class Settings:
    """The page's choices; empty strings and 0 mean "not given" (the command line's default)."""

    preset: str = "tiny"
    pretrained: str = ""
    checkpoint: str = ""
    vlm: str = ""
    conditioning: str = ""  # "": the preset's default
    prompt: str = ""
    seed: int = 0
    tile: int = 0  # 0: the preset's tile
    outscale: float = 4.0
    ext: str = "auto"
    resize_filter: str = "lanczos"

    @classmethod
    def from_spec(cls, spec: ModelSpec, tile: int | None = None, output: OutputOptions = OutputOptions()) -> Settings:
        text = {name: "" if getattr(spec, name) is None else str(getattr(spec, name))
                for name in ("pretrained", "checkpoint", "vlm", "conditioning")}  # fmt: skip
        return cls(preset=spec.preset, prompt=spec.prompt, seed=spec.seed, tile=tile or 0, outscale=output.outscale,
                   ext=output.ext, resize_filter=output.resize_filter, **text)  # fmt: skip

    def spec(self, base: ModelSpec) -> ModelSpec:
        """`base` (the command line's model options) with the page's choices; raises RunError (SpecError's text)."""
        paths = {name: Path(value.strip()) if value.strip() else None
                 for name, value in (("pretrained", self.pretrained), ("checkpoint", self.checkpoint),
                                     ("vlm", self.vlm))}  # fmt: skip
        try:
            return base.replace(preset=self.preset, conditioning=self.conditioning or None, prompt=self.prompt,
                                seed=int(self.seed), **paths)  # fmt: skip
        except ValueError as err:
            raise RunError(str(err)) from None

    def output(self, rounding: str) -> OutputOptions:
        """strsr-upscale's output options for these choices; raises RunError (the flag's message)."""
        try:
            return OutputOptions(outscale=float(self.outscale), ext=self.ext, rounding=rounding,
                                 resize_filter=self.resize_filter)  # fmt: skip
        except ValueError as err:
            raise RunError(str(err)) from None


@dataclass(frozen=True)
class Result:
    """One upscaled file: its uploaded name, the file written (as strsr-upscale writes it), and 8-bit previews of
    the same size for the before/after slider (bicubic, then strsr)."""

    name: str
    output: Path
    before: Path
    after: Path
    seconds: float

    @property
    def size(self) -> tuple[int, int]:
        with Image.open(self.after) as image:
            return image.size


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # strsr-upscale's one-line messages, in input order
    warnings: list[str] = field(default_factory=list)


class Runner:
    """Runs the page's jobs one at a time, keeping the last resolver (building a full preset takes long) and the
    files of the last few runs under `work_dir`."""

    def __init__(self, base: ModelSpec, work_dir: Path, *, overlap: int = 64, rounding: str = "floor"):
        OutputOptions(rounding=rounding)  # checks it
        self.base, self.work_dir, self.overlap, self.rounding = base, Path(work_dir), overlap, rounding
        self._lock = threading.Lock()
        self._cached: tuple[tuple, SuperResolver] | None = None
        self._runs = 0

    def resolver(self, settings: Settings) -> SuperResolver:
        """The resolver for `settings` (reused while they ask for the same model); raises RunError with
        strsr-upscale's message for bad settings or missing weights."""
        spec = settings.spec(self.base)
        key = (spec, settings.tile, self.overlap)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        self._cached = None  # free the old model before building the next one
        try:
            resolver = SuperResolver.from_spec(spec, tile=settings.tile or None, overlap=self.overlap)
        except (CheckpointError, FileNotFoundError, ValueError) as err:
            raise RunError(str(err)) from None
        self._cached = (key, resolver)
        return resolver

    def run(self, paths: list[str | os.PathLike], settings: Settings, progress: Progress | None = None) -> Outcome:
        """Upscale `paths` (the uploaded files); per-file failures go to `Outcome.errors` and the rest go on, as in
        strsr-upscale. Raises RunError when nothing can run."""
        progress = progress or (lambda fraction, text: None)
        if not paths:
            raise RunError("no input: upload one or more images")
        options = settings.output(self.rounding)
        with self._lock:
            progress(0.0, "loading the model")
            resolver = self.resolver(settings)
            outcome = Outcome()
            if resolver.weights_are_random:
                outcome.warnings.append(RANDOM_WEIGHTS_WARNING.format(preset=settings.preset))
            folder = self._new_run_folder()
            sources = [Path(p) for p in paths]
            try:
                jobs = plan_upscale_outputs(sources, folder / "out", ext=options.ext, suffix=options.suffix)
            except ValueError as err:
                raise RunError(_named(str(err), sources)) from None
            for index, (source, target) in enumerate(jobs):
                def on_tile(done: int, total: int, index=index, source=source) -> None:
                    progress((index + done / max(total, 1)) / len(jobs), f"{source.name}: tile {done}/{total}")

                start = time.perf_counter()
                try:
                    upscale_file(resolver, source, target, options, on_tile)
                except (ImageError, ValueError, RuntimeError) as err:  # reported, and the rest go on
                    outcome.errors.append(failure_message(source, err))
                else:
                    seconds = time.perf_counter() - start
                    before, after = write_previews(source, target, folder / "preview" / str(index))
                    outcome.results.append(Result(source.name, target, before, after, seconds))
                    log.info("%s -> %s (%.2f s)", source.name, target.name, seconds)
            progress(1.0, "done")
            return outcome

    def _new_run_folder(self) -> Path:
        self._runs += 1
        folder = self.work_dir / f"run-{self._runs}"
        folder.mkdir(parents=True)
        stale = self.work_dir / f"run-{self._runs - _KEPT_RUNS}"
        shutil.rmtree(stale, ignore_errors=True)
        return folder


def upscale_file(resolver: SuperResolver, source: Path, target: Path, options: OutputOptions,
                 on_tile: Callable[[int, int], None]) -> None:  # fmt: skip
    """One file as strsr-upscale writes it (`strsr.inference.upscale.upscale_file`), reporting (tiles done, tiles in
    all) after each tile."""
    count = {"done": 0, "total": 0}

    def tiles(total):
        if total is not None:
            count["total"] = total
        else:
            count["done"] += 1
        on_tile(count["done"], count["total"])

    _upscale_file(resolver, source, target, options, tiles)


def write_previews(source: Path, output: Path, folder: Path) -> tuple[Path, Path]:
    """8-bit PNGs for the slider: the input upsampled by plain bicubic to the output's size, and the output (which
    may be 16-bit or TIFF, which a browser cannot show as it is)."""
    folder.mkdir(parents=True, exist_ok=True)
    after = _preview(output)
    before = _preview(source).resize(after.size, Image.Resampling.BICUBIC)
    paths = folder / "before.png", folder / "after.png"
    before.save(paths[0])
    after.save(paths[1])
    return paths


def _preview(path: Path) -> Image.Image:
    image = load_image(path)  # upright, 16-bit colour and alpha decoded as strsr reads them
    planes = image.rgb if image.alpha is None else np.concatenate([image.rgb.numpy(), image.alpha.numpy()])
    samples = quantize(np.asarray(planes).transpose(1, 2, 0), 8, "nearest")  # (H, W, 3|4) uint8
    return Image.fromarray(np.ascontiguousarray(samples))


def failure_message(source: Path, err: Exception) -> str:
    """strsr-upscale's line for a failed image (its own `failure_line`, so the two cannot drift apart), naming the
    file by its uploaded name."""
    return _named(failure_line(source, err), [source])


def _named(message: str, sources: list[Path]) -> str:
    """strsr-upscale's message with each uploaded file named by its own name (the server keeps uploads in temporary
    folders the user never chose)."""
    for source in sources:
        message = message.replace(os.fspath(source), source.name)
    return message
