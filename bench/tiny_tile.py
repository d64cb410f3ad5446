"""The tiny preset's default tile: strsr-upscale's latency by output tile on 256^2-512^2 inputs, and PSNR by tile on
held-out photos (the tiny DiT's attention is quadratic in a tile's tokens, so a small tile is much faster; the
question is what the seams cost).

    python -m strsr.bench.tiny_tile --json out/tiny_tile.json

Latency is `SuperResolver.upscale_tensor` (the bundled weights, the preset's overlap of 64 px) on crops of a
bicubic-enlarged held-out photo, median and minimum of `--repeats` after the first call (bench.timing); PSNR is on
chelsea and coffee, x4 from the clean bicubic x1/4 and from JPEG q40 inputs, as `strsr.bench.tiny_eval` scores them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from strsr.bench.report import write_results
from strsr.bench.timing import measure
from strsr.bench.tiny_eval import Scorer, held_out_photo, jpeg

log = logging.getLogger("strsr.bench")

TILES = (256, 512, 1024)
INPUT_SIDES = (256, 384, 512)
PSNR_PHOTOS = ("chelsea", "coffee")


def latency_input(side: int) -> torch.Tensor:
    """(1, 3, side, side) LR: coffee enlarged so that any side up to 512 is real photo content."""
    photo = held_out_photo("coffee")
    big = F.interpolate(photo, scale_factor=1.5, mode="bicubic", align_corners=False).clamp(0, 1)
    return big[:, :, :side, :side].contiguous()


def psnr_inputs(photo: str) -> dict[str, torch.Tensor]:
    hr = held_out_photo(photo)
    bicubic = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    bicubic = (bicubic * 255).round() / 255
    return {"bicubic-x4": bicubic, "jpeg-q40": jpeg(bicubic, 40)}


def run(tiles=TILES, sides=INPUT_SIDES, repeats: int = 3) -> list[dict]:
    from strsr.inference.pipeline import SuperResolver

    scorer = Scorer(no_reference=False)
    rows = []
    for tile in tiles:
        resolver = SuperResolver.from_preset("tiny", device="cpu", tile=tile)
        for side in sides:
            lr = latency_input(side)
            with torch.no_grad():
                timing = measure(lambda: resolver.upscale_tensor(lr), warmup=1, repeats=repeats)
            rows.append({"tile": tile, "input": f"{side}x{side}", **timing})
            log.info("tile %4d  input %dx%d  median %.2f s, min %.2f s", tile, side, side, timing["median_ms"] / 1e3,
                     timing["min_ms"] / 1e3)
        for photo in PSNR_PHOTOS:
            hr = held_out_photo(photo)
            for kind, lr in psnr_inputs(photo).items():
                with torch.no_grad():
                    psnr = scorer(resolver.upscale_tensor(lr), hr)["psnr"]
                rows.append({"tile": tile, "photo": photo, "input": kind, "psnr": psnr})
                log.info("tile %4d  %-8s %-10s %.2f dB", tile, photo, kind, psnr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.tiny_tile", description=__doc__.splitlines()[0])
    p.add_argument("--tiles", default=",".join(map(str, TILES)))
    p.add_argument("--sides", default=",".join(map(str, INPUT_SIDES)), help="LR input sides to time")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    rows = run(tuple(int(t) for t in args.tiles.split(",")), tuple(int(s) for s in args.sides.split(",")),
               args.repeats)  # fmt: skip
    write_results(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
