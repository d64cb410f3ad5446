"""Start-up cost of every strsr command: wall time and peak memory of `COMMAND --help` in a fresh process (the
median of a few runs), and of `import torch` alone for scale.

    python -m strsr.bench.startup --repeats 5 --json out/startup.json
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("strsr.bench")

COMMANDS = ("strsr-upscale", "strsr-export", "strsr-bench", "strsr-eval", "strsr-convert", "strsr-train")


def _run(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def time_command(argv: list[str], repeats: int) -> dict:
    runs = [_run(argv) for _ in range(repeats)]
    return {"median_s": statistics.median(s for s, _ in runs), "min_s": min(s for s, _ in runs),
            "peak_rss_mib_so_far": max(m for _, m in runs)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.startup", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="runs per command (the median is reported)")
    p.add_argument("--json", type=Path, help="records as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    records = []
    for command in COMMANDS:  # the console scripts, as a user runs them (ru_maxrss: the largest child so far)
        path = shutil.which(command)
        if path is None:
            records.append({"command": command, "error": "not on PATH (pip install -e .)"})
            continue
        records.append({"command": f"{command} --help", **time_command([path, "--help"], args.repeats)})
    records.append({"command": "python -c 'import torch'",
                    **time_command([sys.executable, "-c", "import torch"], args.repeats)})  # fmt: skip
    for r in records:
        log.info("%-32s %s", r["command"], r.get("error") or f"{r['median_s']:.3f} s (min {r['min_s']:.3f} s)")
    from strsr.bench.report import write_results

    write_results(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
