"""`strsr-bench`: benchmark entry point.

    strsr-bench kernels [--out DIR]     fused FDL vs reference, attention vs SDPA (JSON per benchmark in DIR)

The kernel benchmarks need a CUDA GPU; without one each says so and the command exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from strsr.bench import kernels_attention, kernels_fdl


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="strsr-bench", description="strsr benchmarks")
    sub = p.add_subparsers(dest="command", required=True)
    kernels = sub.add_parser("kernels", help="Triton kernels against their PyTorch references")
    kernels.add_argument("--out", type=Path, help="folder for attention.json and fdl.json")
    kernels.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="FDL input sides")
    args = p.parse_args(argv)
    attention_args = ["--json", str(args.out / "attention.json")] if args.out else []
    fdl_args = ["--sizes", *map(str, args.sizes)] + (["--json", str(args.out / "fdl.json")] if args.out else [])
    return max(kernels_attention.main(attention_args), kernels_fdl.main(fdl_args))


if __name__ == "__main__":
    sys.exit(main())
