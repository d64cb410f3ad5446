"""CPU latency of the tiny preset's x4 upscale, e.g. 64->256 and 256->1024 (median of repeated runs).

    python -m strsr.bench.upscale_cpu --sizes 64 256 --repeats 5 --json out/upscale_cpu.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from strsr.bench.report import write_results
from strsr.bench.timing import measure
from strsr.inference.pipeline import SuperResolver

log = logging.getLogger("strsr.bench")


def time_upscale(resolver: SuperResolver, size: int, repeats: int, warmup: int = 1) -> dict:
    lr = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    return measure(lambda: resolver.upscale_tensor(lr), warmup=warmup, repeats=repeats)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.upscale_cpu", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="LR input sides (output is 4x)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tile", type=int, help="output tile (default: the preset's)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    resolver = SuperResolver.from_preset(args.preset, device="cpu", tile=args.tile)
    records = []
    for size in args.sizes:
        timing = time_upscale(resolver, size, args.repeats)
        records.append({"preset": args.preset, "lr": size, "out": 4 * size, "tile": resolver.tile,
                        "median_s": timing["median_ms"] / 1e3, "min_s": timing["min_ms"] / 1e3,
                        "runs": timing["runs"]})  # fmt: skip
    log.info("%-8s %10s %10s %10s", "preset", "LR->out", "median s", "min s")
    for r in records:
        log.info("%-8s %10s %10.3f %10.3f", r["preset"], f"{r['lr']}->{r['out']}", r["median_s"], r["min_s"])
    write_results(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
