"""Peak host memory of each exported stage in ONNX Runtime for one full tile: every stage runs alone in a fresh
process (so its peak is its own), and the peak resident set (ru_maxrss) is read afterwards.

    strsr-export --preset tiny --out exported/ && python -m strsr.bench.onnx_memory exported/ --tile 1024

The attention in the graphs decides this: ONNX Runtime's fused MultiHeadAttention (strsr-export's default) never
builds the N x N scores, the standard Attention node does on the CPU (strsr-export --attention-op onnx).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("strsr.bench")

STAGE_SCRIPT = """
import json, resource, sys, time
import numpy as np, onnxruntime as ort
path, shapes = sys.argv[1], json.loads(sys.argv[2])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
start = time.perf_counter()
session.run(None, feeds)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def tile_shapes(manifest: dict, tile: int) -> dict[str, dict[str, list[int]]]:
    """Each stage's input shapes for one `tile` x `tile` output tile at batch 1, from the manifest's symbolic dims:
    the FLUX.2 state has one position per pixel multiple (2x2-patchified latents), Z-Image's one per VAE pixel."""
    vae_scale = (manifest.get("latent") or {}).get("vae_scale", manifest["pixel_multiple"] // 2)
    state_scale = manifest["pixel_multiple"] if manifest["family"] == "flux2" else vae_scale
    sizes = {"batch": 1, "height": tile, "width": tile, "latent_height": tile // vae_scale,
             "latent_width": tile // vae_scale, "state_height": tile // state_scale,
             "state_width": tile // state_scale, "condition_tokens": 1}  # fmt: skip
    return {stage: {name: [sizes[d] if isinstance(d, str) else d for d in dims]
                    for name, dims in graph["inputs"].items()}
            for stage, graph in manifest["graphs"].items()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.onnx_memory", description=__doc__.splitlines()[0])
    p.add_argument("engine_dir", type=Path, help="an strsr-export folder")
    p.add_argument("--tile", type=int, default=1024, help="output tile side (default 1024)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    manifest = json.loads((args.engine_dir / "manifest.json").read_text())
    records = []
    for stage, shapes in tile_shapes(manifest, args.tile).items():
        path = args.engine_dir / manifest["graphs"][stage]["file"]
        result = subprocess.run([sys.executable, "-c", STAGE_SCRIPT, str(path), json.dumps(shapes)],
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            records.append({"stage": stage, "error": result.stderr.strip().splitlines()[-1:]})
        else:
            out = json.loads(result.stdout.strip().splitlines()[-1])
            records.append({"stage": stage, "tile": args.tile, "attention_op": manifest.get("attention_op"),
                            "inputs": shapes, "seconds": round(out["seconds"], 2),
                            "peak_rss_mib": round(out["peak_kib"] / 1024)})  # fmt: skip
        log.info("%s", records[-1])
    if args.json:
        from strsr.bench.report import write_results

        write_results(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
