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

from tqdm import tqdm

from strsr.autoencoders import LATENT_MODES
from strsr.checkpoint import CheckpointError
from strsr.conditioning import CONDITIONING_MODES
from strsr.imageio import ROUNDING_MODES, ImageError, load_image
from strsr.outputs import plan_outputs
from strsr.pipeline import MAX_INPUT_PIXELS, SuperResolver
from strsr.presets import PRESETS

log = logging.getLogger("strsr")

OUTPUT_SUFFIXES = (".png", ".tif", ".webp", ".jpg")


def sample_image() -> Path:
    """The bundled low-resolution sample photo (96x64)."""
    return Path(str(resources.files("strsr") / "data" / "samples" / "chelsea.png"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strsr-upscale", description="x4 one-step DiT super-resolution (StrSR)")
    p.add_argument("inputs", nargs="*", type=Path, help="image files and folders (folders are searched recursively)")
    p.add_argument("--sample", action="store_true", help="upscale the bundled sample photo")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model preset (default: tiny)")
    p.add_argument("--pretrained", type=Path, help="local diffusers folder of the base model (transformer/, vae/...)")
    p.add_argument("--checkpoint", type=Path,
                   help="strsr generator checkpoint (.safetensors), or an official StrSR folder (state_dict.pth)")
    p.add_argument("--random-weights", action="store_true", help="random weights (benchmarks); no --pretrained")
    p.add_argument("--conditioning", choices=CONDITIONING_MODES,
                   help="vlm (default for full presets), text, or none (default for tiny presets)")
    p.add_argument("--vlm", type=Path, help="local Qwen3-VL folder, for --conditioning vlm")
    p.add_argument("--text-encoder", type=Path,
                   help="folder with text_encoder/ and tokenizer/ for --conditioning text (default: --pretrained)")
    p.add_argument("--prompt", default="", help="prompt for --conditioning text (vlm: default the official one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("--tile", type=int, default=1024, help="output tile size in pixels (default: 1024, as official)")
    p.add_argument("--overlap", type=int, default=64,
                   help="overlap between output tiles in pixels (default: 64, as official)")  # fmt: skip
    p.add_argument("--latent", default="sample", choices=LATENT_MODES,
                   help="VAE encoding: sample (the official scripts', seeded per image by --seed) or mode "
                        "(the posterior mean, no noise) (default: sample)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seed of each image's latent sample, and of --random-weights (default: 0)")  # fmt: skip
    p.add_argument("--rounding", default="floor", choices=ROUNDING_MODES,
                   help="float to integer samples: floor (what the official scripts write) or nearest "
                        "(default: floor)")  # fmt: skip
    p.add_argument("--attention", default="sdpa", choices=("sdpa", "triton", "triton-fused"),
                   help="attention kernels: PyTorch SDPA, or strsr's Triton kernels (FLUX.2 presets, GPU)")  # fmt: skip
    p.add_argument("--format", default=".png", choices=OUTPUT_SUFFIXES, help="output file type (default: .png)")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx", "trt"),
                   help="torch (default); onnx or trt: an strsr-export folder in ONNX Runtime or TensorRT")  # fmt: skip
    p.add_argument("--engine-dir", type=Path, help="strsr-export output folder, for --backend onnx|trt")
    p.add_argument("--cuda-graph", action="store_true", help="--backend trt: replay a CUDA graph per tile shape")
    p.add_argument("--verify", action="store_true",
                   help="--backend onnx|trt: check every exported file's sha256 (sizes are always checked)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _rank_share(jobs: list, env=os.environ) -> list:
    rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    return jobs[rank::world]


def _device_for_rank(device: str, env=os.environ) -> str:
    if device == "auto" and "LOCAL_RANK" in env:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{env['LOCAL_RANK']}"
    return device


def _process(resolver: SuperResolver, source: Path, target: Path, quiet: bool, rounding: str) -> None:
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
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="strsr-upscale: %(message)s", stream=sys.stderr)
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

    if args.backend != "torch" and args.engine_dir is None:
        log.error("--backend %s needs --engine-dir (a strsr-export output folder)", args.backend)
        return 2
    try:
        if args.backend != "torch":
            resolver = SuperResolver.from_export(args.engine_dir, args.preset, tile=args.tile, overlap=args.overlap,
                                                 seed=args.seed, backend=args.backend, cuda_graph=args.cuda_graph,
                                                 vlm=args.vlm, verify=args.verify)  # fmt: skip
        else:
            resolver = SuperResolver.from_preset(
                args.preset, pretrained=args.pretrained, checkpoint=args.checkpoint,
                random_weights=args.random_weights, conditioning=args.conditioning, prompt=args.prompt,
                vlm=args.vlm, text_encoder=args.text_encoder,
                device=_device_for_rank(args.device), dtype=args.dtype, tile=args.tile, overlap=args.overlap,
                seed=args.seed, latent=args.latent, attention_backend=args.attention,
            )  # fmt: skip
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    if resolver.weights_are_random:
        log.warning(
            "weights are random (preset %r, no trained checkpoint): the output shows the pipeline working, "
            "not real super-resolution",
            args.preset,
        )

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
