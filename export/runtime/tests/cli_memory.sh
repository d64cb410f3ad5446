#!/usr/bin/env bash
# strsr-infer's memory is bounded by one band of tiles plus the image files, not a float canvas of the output:
# on the sampling fixture's "mode" export (near-free graphs), a 64x8192 input (a 256x32768 output, 25 MB of RGB8)
# may raise the peak RSS over a 64x64 input's by at most 4 times the output's bytes (a whole-output float32
# canvas, its weights and copies cost about 20 times). Usage: cli_memory.sh INFER SAMPLING_DIR
set -euo pipefail
infer=$1 exports=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python - "$infer" "$exports/mode" "$tmp" <<'PY'
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

infer, export, tmp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
rng = np.random.default_rng(0)


def peak_kib(width: int, height: int) -> int:
    """Peak RSS of one strsr-infer run on a width x height RGB8 PNG, in KiB (each run in a fresh child)."""
    source = tmp / f"in_{width}x{height}.png"
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(source)
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, infer, str(source), "-o", str(tmp / "out.png"),
                          "--engine-dir", export, "--tile", "64", "--overlap", "16"],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


small, tall = peak_kib(64, 64), peak_kib(64, 8192)
output_kib = 256 * 32768 * 3 // 1024
print(f"peak RSS: 64x64 {small} KiB, 64x8192 {tall} KiB (+{tall - small} KiB; output {output_kib} KiB)")
if tall - small > 4 * output_kib:
    sys.exit(f"FAILED: the tall image needs {tall - small} KiB more than a small one, over 4x its output's bytes")
PY
