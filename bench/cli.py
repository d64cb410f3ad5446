"""`strsr-bench`: benchmark entry point.

    strsr-bench --res 1024 [--preset P] [--runtimes eager,compile,onnx,trt-fp16,trt-fp8] [--device cuda|cpu] ...
        per-stage latency, throughput and memory by runtime, FLOPs and fraction of peak (strsr.bench.pipeline_bench)
    strsr-bench kernels [-o DIR]
        fused FDL vs reference, attention vs SDPA (JSON per benchmark in DIR); without a GPU each says so, exit 0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from strsr.bench import pipeline_bench
from strsr.spec import HelpFormatter


def kernels_main(argv: list[str]) -> int:
    from strsr.bench import kernels_attention, kernels_fdl

    p = argparse.ArgumentParser(prog="strsr-bench kernels", description="Triton kernels against their references",
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("-o", "--output", type=Path, help="folder for attention.json and fdl.json")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="FDL input sides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    out = args.output
    fdl = kernels_fdl.FdlKernelBenchSpec(tuple(args.sizes), num_proj=256, patch_size=5, batch=1, warmup_ms=25,
                                         rep_ms=100)  # fmt: skip
    return max(kernels_attention.report(out / "attention.json" if out else None),
               kernels_fdl.report(fdl, out / "fdl.json" if out else None))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["kernels"]:
        return kernels_main(argv[1:])
    return pipeline_bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
