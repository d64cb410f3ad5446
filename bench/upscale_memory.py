"""Peak host memory of `strsr-upscale` by image size: each size runs in a fresh process (the real CLI on a PNG), and
its peak resident set (ru_maxrss) is read afterwards, with the wall time and the output size.

    python -m strsr.bench.upscale_memory --sizes 256x256 1000x750 4000x3000 --json out/upscale_memory.json
    python -m strsr.bench.upscale_memory --runtime onnx --engine-dir exported/ --sizes 256x256 500x375

The pipeline holds one band of tiles in float32 and the output's integer samples, so the peak should grow with the
output's 8-bit size (3 bytes per output pixel), not with a float canvas (the target: a 4000x3000 input, i.e. a
16000x12000 output, within 4 GB with the tiny preset on a CPU).
"""

from __future__ import annotations

import argparse
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("strsr.bench")


def make_input(path: Path, width: int, height: int) -> None:
    """A real photo (scikit-image's astronaut) resized to width x height: content like a user's, any size."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC).save(path)


def run_one(width: int, height: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="strsr-memory-") as folder:
        source = Path(folder) / "in.png"
        make_input(source, width, height)
        command = [sys.executable, "-m", "strsr.inference.cli", str(source), "-o", str(Path(folder) / "out"),
                   "--quiet", *extra]  # fmt: skip
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
        if result.returncode != 0:
            return {"input": f"{width}x{height}", "error": result.stderr.strip().splitlines()[-1:]}
    return {"input": f"{width}x{height}", "output": f"{4 * width}x{4 * height}", "seconds": round(seconds, 1),
            "peak_rss_mib": round(peak_kib / 1024), "output_8bit_mib": round(48 * width * height / 2**20)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.upscale_memory", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["256x256", "1000x750", "2000x1500"], help="LR sizes WxH")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--tile", type=int, help="output tile (default: strsr-upscale's)")
    p.add_argument("--runtime", default="torch", choices=("torch", "onnx"), help="strsr-upscale's --runtime")
    p.add_argument("--engine-dir", type=Path, help="strsr-export folder for --runtime onnx")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    extra = ["--preset", args.preset, "--runtime", args.runtime]
    extra += ["--tile", str(args.tile)] if args.tile else []
    extra += ["--engine-dir", str(args.engine_dir)] if args.engine_dir else []
    # sizes run smallest first: ru_maxrss of RUSAGE_CHILDREN is the maximum over every child so far
    sizes = sorted((tuple(int(v) for v in s.lower().split("x")) for s in args.sizes), key=lambda wh: wh[0] * wh[1])
    records = []
    for width, height in sizes:
        record = run_one(width, height, extra)
        records.append({"preset": args.preset, "runtime": args.runtime, "tile": args.tile, **record})
        log.info("%s", records[-1])
    if args.json:
        from strsr.bench.report import write_results

        write_results(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
