"""`strsr-upscale`: x4 super-resolution of image files and folders, with Real-ESRGAN's command-line conventions.

    strsr-upscale photo.jpg shots/ -o out/ --preset flux2-klein-4b --pretrained ~/models/FLUX.2-klein-base-4B \
        --checkpoint strsr-flux.safetensors -s 2 --suffix out --ext auto

Outputs are named as Real-ESRGAN names them (`<stem>[_<suffix>].<ext>`, `--ext auto` keeping each input's format);
an output that exists already is skipped unless `--overwrite` is given, and no output ever replaces an input. Each
output is written to a temporary name and renamed, so a failure never leaves a partial file; one bad image is
reported on one line and the rest still complete (exit status 1 if any failed). `--manifest FILE` records the run as
JSON. Log lines go through the progress bars' writer. Under `torchrun`, each rank takes every WORLD_SIZE-th image.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from importlib import resources
from pathlib import Path

from strsr.inference.upscale import RESIZE_FILTERS, OutputOptions, failure_line, upscale_file
from strsr.io.formats import EXTENSIONS
from strsr.spec import ROUNDING_MODES, HelpFormatter, ModelSpec

log = logging.getLogger("strsr")

RUNTIMES = ("torch", "onnx", "trt")
OFFLOAD_MODES = ("none", "model", "sequential")  # strsr.inference.diffusers_pipeline.OFFLOAD_MODES, without torch


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
    run.add_argument("-s", "--outscale", type=float, default=4.0,
                     help="final scale: the model runs x4, then the result is resized to int(side * outscale) "
                          "(as Real-ESRGAN's -s)")  # fmt: skip
    run.add_argument("--resize-filter", default="lanczos", choices=list(RESIZE_FILTERS),
                     help="OpenCV filter of the --outscale resize (lanczos: Real-ESRGAN's INTER_LANCZOS4; area "
                          "avoids aliasing below x4)")  # fmt: skip
    run.add_argument("--ext", default="auto", choices=EXTENSIONS,
                     help="output format: auto keeps each input's format (a file whose format cannot be kept gets "
                          "png), or one format for all")  # fmt: skip
    run.add_argument("--suffix", default="", help="append _SUFFIX to each output's name, before the extension")
    run.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: skip them)")
    run.add_argument("--rounding", default="floor", choices=ROUNDING_MODES,
                     help="float to integer samples: floor (what the official scripts write) or nearest")
    run.add_argument("--manifest", type=Path, help="write a JSON record of the run (inputs, outputs, settings, "
                                                   "seconds per image) to this file")  # fmt: skip
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--offload", default="none", choices=OFFLOAD_MODES,
                     help="keep weights in CPU memory and move them to the GPU as they run (StrSRPipeline): model "
                          "moves one model at a time (the VLM leaves before the DiT runs), sequential one layer at a "
                          "time (least memory, slowest)")  # fmt: skip
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


def _process(upscaler, source: Path, target: Path, options: OutputOptions, quiet: bool) -> tuple[int, int]:
    """Upscale `source` into `target` with a per-tile progress bar; returns the output's (width, height)."""
    from tqdm import tqdm

    bar = None

    def progress(total):
        nonlocal bar
        if total is not None:
            bar = tqdm(total=total, desc=source.name, unit="tile", leave=False, disable=quiet or total == 1)
        else:
            bar.update()

    try:
        result = upscale_file(upscaler, source, target, options, progress)
    finally:
        if bar is not None:
            bar.close()
    return result.samples.shape[1], result.samples.shape[0]


def _settings(args, spec: ModelSpec, options: OutputOptions) -> dict:
    return {"model": spec, "output": options, "tile": args.tile, "overlap": args.overlap, "runtime": args.runtime,
            "engine_dir": args.engine_dir, "offload": args.offload, "overwrite": args.overwrite,
            "world_size": int(os.environ.get("WORLD_SIZE", 1))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="strsr-upscale: %(message)s", stream=sys.stderr)
    try:
        spec = ModelSpec.from_args(args)
        options = OutputOptions(outscale=args.outscale, ext=args.ext, suffix=args.suffix, rounding=args.rounding,
                                resize_filter=args.resize_filter)  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    if args.offload != "none" and args.runtime != "torch":
        parser.error(f"--offload {args.offload} is for --runtime torch (exported engines manage their own memory)")
    if args.runtime != "torch" and args.engine_dir is None:
        parser.error(f"--runtime {args.runtime} needs --engine-dir (a strsr-export output folder)")
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from strsr.inference.pipeline import SuperResolver
    from strsr.inference.run_manifest import RunManifest, rank_path
    from strsr.io.images import ImageError
    from strsr.io.outputs import plan_upscale_outputs
    from strsr.model.checkpoint import CheckpointError

    inputs = list(args.inputs) + ([sample_image()] if args.sample else [])
    if not inputs:
        log.error("no input: give image files or folders, or --sample")
        return 2
    try:
        jobs = _rank_share(plan_upscale_outputs(inputs, args.output, ext=options.ext, suffix=options.suffix))
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

    manifest = RunManifest("strsr-upscale", _settings(args, spec, options))
    todo = []
    for source, target in jobs:
        if target.exists() and not args.overwrite:
            log.info("%s: %s exists, skipped (--overwrite redoes it)", source, target)
            manifest.add(source, target, "skipped", reason="output exists")
        else:
            todo.append((source, target))
    failures = 0
    if todo:
        try:
            if args.runtime != "torch":
                upscaler = SuperResolver.from_export(args.engine_dir, spec, runtime=args.runtime, tile=args.tile,
                                                     overlap=args.overlap, cuda_graph=args.cuda_graph,
                                                     verify=args.verify)  # fmt: skip
            elif args.offload != "none":
                from strsr.inference.diffusers_pipeline import StrSRPipeline

                upscaler = StrSRPipeline.from_spec(spec, tile=args.tile, overlap=args.overlap, offload=args.offload)
            else:
                upscaler = SuperResolver.from_spec(spec, tile=args.tile, overlap=args.overlap)
        except (CheckpointError, FileNotFoundError, ValueError) as err:
            log.error("%s", err)
            return 2
        if upscaler.weights_are_random:
            log.warning("weights are random (preset %r, no trained checkpoint): the output shows the pipeline "
                        "working, not real super-resolution", spec.preset)  # fmt: skip
        with logging_redirect_tqdm():  # log lines through tqdm.write: they do not break the bars
            for source, target in tqdm(todo, desc="images", unit="img", disable=args.quiet or len(todo) == 1):
                start = time.perf_counter()
                try:
                    size = _process(upscaler, source, target, options, args.quiet)
                except (ImageError, ValueError, RuntimeError) as err:  # report it, go on with the rest
                    failures += 1
                    log.error("%s", failure_line(source, err))
                    manifest.add(source, target, "failed", seconds=time.perf_counter() - start,
                                 reason=failure_line(source, err))  # fmt: skip
                else:
                    manifest.add(source, target, "written", seconds=time.perf_counter() - start, size=size)
                    log.info("%s -> %s", source, target)
    if failures:
        log.error("%d of %d images failed", failures, len(todo))
    if args.manifest is not None:
        try:
            manifest.write(rank_path(args.manifest))
        except OSError as err:
            log.error("%s: cannot write the manifest (%s)", args.manifest, err.strerror or err)
            return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
