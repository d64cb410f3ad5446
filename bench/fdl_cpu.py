"""CPU forward+backward time and peak memory of the reference FDL (paper §3.4) per square image size.

    python -m strsr.bench.fdl_cpu --sizes 128 256 --repeats 3 --json out/fdl_cpu.json

Time: median over `repeats` forward+backward passes after one warm-up pass (the first call pays oneDNN set-up).
Memory: each size runs in a fresh subprocess, so the process high-water mark is that size's alone. Peak memory is
`ru_maxrss` after the passes minus the resident set (psutil) just before them: the extra memory a forward+backward
needs on top of the loaded loss (VGG19 + projections) and the inputs. tracemalloc cannot see torch's allocator,
and sampling RSS from a thread can miss short peaks; the kernel's high-water mark cannot. If the passes never
exceed the high-water mark left by set-up, the figure is an upper bound and `peak_exceeds_setup` is false.
GFLOP counts convolutions and matmuls (torch's FlopCounterMode, one extra pass); FFT and sort are not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import subprocess
import sys
from pathlib import Path

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

from strsr.bench.report import write_results
from strsr.bench.timing import measure as measure_call
from strsr.losses.fdl import FrequencyDistributionLoss

log = logging.getLogger("strsr.bench")
_KIB = 1024


@dataclasses.dataclass(frozen=True)
class FdlCpuBenchSpec:
    sizes: tuple[int, ...]
    repeats: int
    num_proj: int
    batch: int
    threads: int | None

    def __post_init__(self):
        if any(s < 80 for s in self.sizes):
            raise ValueError(f"FDL needs sizes >= 80 (the 5x5 projections at 1/16 resolution), got {self.sizes}")
        if self.repeats < 1 or self.num_proj < 1 or self.batch < 1 or (self.threads is not None and self.threads < 1):
            raise ValueError("repeats, num_proj, batch and threads must be positive")


def measure_size(size: int, spec: FdlCpuBenchSpec) -> dict:
    """Time and peak memory of forward+backward at one size; run in a fresh process for a meaningful peak."""
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    loss = FrequencyDistributionLoss(num_proj=spec.num_proj)
    gen = torch.Generator().manual_seed(size)
    x = (torch.rand(spec.batch, 3, size, size, generator=gen) * 2 - 1).requires_grad_()
    y = torch.rand(spec.batch, 3, size, size, generator=gen) * 2 - 1
    rss_before = psutil.Process().memory_info().rss
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _KIB  # KiB on Linux

    def step():
        x.grad = None
        loss(x, y).backward()

    timing = measure_call(step, warmup=1, repeats=spec.repeats)
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _KIB
    with FlopCounterMode(display=False) as counter:
        loss(x, y).backward()
    median = timing["median_ms"] / 1e3
    flops = counter.get_total_flops()
    return {
        "size": size, "batch": spec.batch, "num_proj": spec.num_proj, "median_s": median,
        "min_s": timing["min_ms"] / 1e3, "runs": timing["runs"], "peak_mib": (maxrss_after - rss_before) / 2**20,
        "rss_before_mib": rss_before / 2**20,
        "peak_exceeds_setup": maxrss_after > maxrss_before, "gflop": flops / 1e9, "gflops": flops / 1e9 / median,
    }  # fmt: skip


def _spec_args(spec: FdlCpuBenchSpec) -> list[str]:
    args = ["--repeats", str(spec.repeats), "--num-proj", str(spec.num_proj), "--batch", str(spec.batch)]
    return args + (["--threads", str(spec.threads)] if spec.threads is not None else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.fdl_cpu", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="square image sides")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-proj", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path)
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # internal: measure one size, JSON to stdout
    args = p.parse_args(argv)
    spec = FdlCpuBenchSpec(tuple(args.sizes), args.repeats, args.num_proj, args.batch, args.threads)
    if args.worker is not None:
        logging.basicConfig(level=logging.ERROR)  # keep the worker's stdout to the one JSON line
        sys.stdout.write(json.dumps(measure_size(args.worker, spec)) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    records = []
    for size in spec.sizes:
        cmd = [sys.executable, "-m", "strsr.bench.fdl_cpu", "--worker", str(size), *_spec_args(spec)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
    log.info("%-6s %6s %10s %10s %10s %8s %8s", "size", "proj", "median s", "min s", "peak MiB", "GFLOP", "GFLOP/s")
    for r in records:
        log.info("%-6s %6d %10.3f %10.3f %10.1f %8.1f %8.1f", f"{r['size']}²", r["num_proj"], r["median_s"],
                 r["min_s"], r["peak_mib"], r["gflop"], r["gflops"])  # fmt: skip
    write_results(args.json, records, threads=spec.threads or torch.get_num_threads(), logical_cpus=psutil.cpu_count())
    return 0


if __name__ == "__main__":
    sys.exit(main())
