"""`strsr-upscale`: x4 super-resolution of image files and folders.

    strsr-upscale photo.jpg shots/ -o out/ --preset flux2-klein-4b --pretrained ~/models/FLUX.2-klein-base-4B \
        --checkpoint strsr-flux.safetensors

Each output is written to a temporary name and renamed, so a failure never leaves a partial file; one bad image is
reported on one line and the rest still complete (exit status 1 if any failed). Under `torchrun`, each rank takes
every WORLD_SIZE-th image.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from strsr.spec import ROUNDING_MODES, HelpFormatter, ModelSpec

log = logging.getLogger("strsr")

OUTPUT_SUFFIXES = (".png", ".tif", ".webp", ".jpg")
RUNTIMES = ("torch", "onnx", "trt")


def sample_image() -> Path:
    """The bundled low-resolution sample photo (96x64)."""
    return Path(str(resources.files("strsr") / "data" / "samples" / "chelsea.png"))


def build_parser() -> argparse.ArgumentParser:
    """The parser, built without importing torch (so --help is instant)."""
    p = argparse.ArgumentParser(prog="strsr-upscale", description="x4 one-step DiT super-resolution (StrSR)",
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("inputs", nargs="*", type=Path, help="image files and folders (folders are searched recursively)")
    p.add_argument("--sample", action="store_true", help="upscale the bundled sample photo")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    ModelSpec.add_args(p)
    run = p.add_argument_group("tiling and output")
    run.add_argument("--tile", type=int, help="output tile size in pixels (default: the preset's; 1024 as the "
                                              "official scripts for full presets)")  # fmt: skip
    run.add_argument("--overlap", type=int, default=64, help="overlap between output tiles in pixels (as official)")
    run.add_argument("--rounding", default="floor", choices=ROUNDING_MODES,
                     help="float to integer samples: floor (what the official scripts write) or nearest")
    run.add_argument("--format", default=".png", choices=OUTPUT_SUFFIXES, help="output file type")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    exported = p.add_argument_group("exported runtimes")
    exported.add_argument("--runtime", default="torch", choices=RUNTIMES,
                          help="torch (the PyTorch model); onnx or trt: an strsr-export folder in ONNX Runtime or "
                               "TensorRT")  # fmt: skip
    exported.add_argument("--engine-dir", type=Path, help="strsr-export output folder, for --runtime onnx|trt")
    exported.add_argument("--cuda-graph", action="store_true", help="--runtime trt: replay a CUDA graph per tile")
    exported.add_argument("--verify", action="store_true",
                          help="--runtime onnx|trt: check every exported file's sha256 (sizes are always checked)")
    return p


def _rank_share(jobs: list, env=os.environ) -> list:
    rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    return jobs[rank::world]


def _process(resolver, source: Path, target: Path, quiet: bool, rounding: str) -> None:
    from tqdm import tqdm

    from strsr.inference.pipeline import MAX_INPUT_PIXELS
    from strsr.io.images import load_image

    image = load_image(source, max_pixels=MAX_INPUT_PIXELS)
    bar = None

    def progress(total):
        nonlocal bar
        if total is not None:
            bar = tqdm(total=total, desc=source.name, unit="tile", leave=False, disable=quiet or total == 1)
        else:
            bar.update()

    keep_alpha = target.suffix != ".jpg"
    if image.alpha is not None and not keep_alpha:
        log.warning("%s: JPEG has no alpha channel; alpha dropped in %s", source, target)
    bit_depth = image.bit_depth if target.suffix in (".png", ".tif") else 8
    try:
        result = resolver.upscale_image(image, progress, bit_depth=bit_depth, alpha=keep_alpha, rounding=rounding)
    finally:
        if bar is not None:
            bar.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    result.save(target)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="strsr-upscale: %(message)s", stream=sys.stderr)
    try:
        spec = ModelSpec.from_args(args)
    except ValueError as err:
        parser.error(str(err))
    if args.runtime != "torch" and args.engine_dir is None:
        parser.error(f"--runtime {args.runtime} needs --engine-dir (a strsr-export output folder)")
    from tqdm import tqdm

    from strsr.inference.pipeline import SuperResolver
    from strsr.io.images import ImageError
    from strsr.io.outputs import plan_outputs
    from strsr.model.checkpoint import CheckpointError

    inputs = list(args.inputs) + ([sample_image()] if args.sample else [])
    if not inputs:
        log.error("no input: give image files or folders, or --sample")
        return 2
    try:
        jobs = _rank_share(plan_outputs(inputs, args.output, lambda relative: relative.with_suffix(args.format)))
    except ValueError as err:  # ImageError (a missing input) or an output over an input
        log.error("%s", err)
        return 2
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.error("%s: cannot create output folder (%s)", args.output, err.strerror or err)
        return 2
    if not os.access(args.output, os.W_OK):
        log.error("%s: output folder is not writable", args.output)
        return 2

    try:
        if args.runtime != "torch":
            resolver = SuperResolver.from_export(args.engine_dir, spec, runtime=args.runtime, tile=args.tile,
                                                 overlap=args.overlap, cuda_graph=args.cuda_graph,
                                                 verify=args.verify)  # fmt: skip
        else:
            resolver = SuperResolver.from_spec(spec, tile=args.tile, overlap=args.overlap)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    if resolver.weights_are_random:
        log.warning("weights are random (preset %r, no trained checkpoint): the output shows the pipeline working, "
                    "not real super-resolution", spec.preset)  # fmt: skip

    failures = 0
    for source, target in tqdm(jobs, desc="images", unit="img", disable=args.quiet or len(jobs) == 1):
        try:
            _process(resolver, source, target, args.quiet, args.rounding)
        except ImageError as err:
            failures += 1
            log.error("%s", err)
        except ValueError as err:  # an image the model cannot take (e.g. too elongated for the VLM)
            failures += 1
            log.error("%s: %s", source, err)
        except RuntimeError as err:  # e.g. out of memory on one huge image: report it, go on with the rest
            failures += 1
            log.error("%s: failed (%s)", source, str(err).splitlines()[0])
        else:
            log.info("%s -> %s", source, target)
    if failures:
        log.error("%d of %d images failed", failures, len(jobs))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
