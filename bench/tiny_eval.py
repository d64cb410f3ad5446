"""Held-out quality of a tiny checkpoint against plain bicubic: PSNR and SSIM on x4 bicubic-downscaled and on
RealESRGAN-degraded inputs (photos shipped with scikit-image; the tiny recipe never trains on them).

    python -m strsr.bench.tiny_eval --checkpoint strsr/data/weights/strsr-tiny.safetensors --json out/eval.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from strsr.bench.report import write_results
from strsr.degradation.config import DegradationConfig
from strsr.degradation.realesrgan import RealESRGANDegradation
from strsr.inference.pipeline import SuperResolver

log = logging.getLogger("strsr.bench")

HELD_OUT = ("chelsea", "coffee")


def held_out_photo(name: str) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], cropped to multiples of 4."""
    array = np.asarray(getattr(data, name)())
    h, w = array.shape[0] // 4 * 4, array.shape[1] // 4 * 4
    return torch.from_numpy(array[:h, :w]).permute(2, 0, 1)[None].float() / 255


def degraded_inputs(hr: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    bicubic = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    pair = RealESRGANDegradation(DegradationConfig(sharpen_gt=False))(hr, torch.Generator().manual_seed(seed))
    return {"bicubic-x4": bicubic, "realesrgan": pair.lr}


def _scores(output: torch.Tensor, hr: torch.Tensor) -> tuple[float, float]:
    a = (output[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    b = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return peak_signal_noise_ratio(b, a), structural_similarity(b, a, channel_axis=2)


def held_out_outputs(resolver: SuperResolver, seed: int = 0):
    """(photo name, input kind, method, output, HR) for bicubic and the model on every held-out photo and input."""
    for name in HELD_OUT:
        hr = held_out_photo(name)
        for kind, lr in degraded_inputs(hr, seed).items():
            bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
            for method, output in (("bicubic", bicubic), ("strsr-tiny", resolver.upscale_tensor(lr))):
                yield name, kind, method, output, hr


def evaluate(resolver: SuperResolver, seed: int = 0) -> list[dict]:
    rows = []
    for name, kind, method, output, hr in held_out_outputs(resolver, seed):
        psnr, ssim = _scores(output, hr)
        rows.append({"image": name, "input": kind, "method": method, "psnr": psnr, "ssim": ssim})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.tiny_eval", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="tiny generator weights (default: the bundled ones, if any)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    resolver = SuperResolver.from_preset("tiny", checkpoint=args.checkpoint, device="cpu")
    rows = evaluate(resolver)
    log.info("%-8s %-11s %-11s %7s %7s", "image", "input", "method", "PSNR", "SSIM")
    for r in rows:
        log.info("%-8s %-11s %-11s %7.2f %7.4f", r["image"], r["input"], r["method"], r["psnr"], r["ssim"])
    write_results(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
