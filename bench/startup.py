"""Start-up cost of every strsr command: wall time and peak memory of `COMMAND --help` in a fresh process (the
median of a few runs), of the README's main job, and of the imports under it for scale: `import torch` alone,
`import diffusers.utils` (diffusers imports torch._dynamo there) and diffusers' FLUX.2 transformer class (its
package imports every transformer module, and diffusers.hooks imports peft, and peft transformers).

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
import tempfile
import time
from pathlib import Path

log = logging.getLogger("strsr.bench")

# the imports under the main job, each in a fresh process: what no strsr change can take off its time
IMPORTS = ("import torch", "import diffusers.utils", "from diffusers import Flux2Transformer2DModel")
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
    main_job = shutil.which("strsr-upscale")
    if main_job is not None:
        with tempfile.TemporaryDirectory() as out:
            records.append({"command": "strsr-upscale --sample -o OUT",
                            **time_command([main_job, "--sample", "-o", out, "--overwrite"], args.repeats)})
    for statement in IMPORTS:
        records.append({"command": f"python -c '{statement}'",
                        **time_command([sys.executable, "-c", statement], args.repeats)})  # fmt: skip
    for r in records:
        log.info("%-52s %s", r["command"], r.get("error") or f"{r['median_s']:.3f} s (min {r['min_s']:.3f} s)")
    from strsr.bench.report import write_results

    write_results(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
