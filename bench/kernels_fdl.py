"""Fused spectral sliced-Wasserstein (FDL, paper §3.4) against its PyTorch reference, per VGG19 layer spectrum:
forward+backward time (CUDA events, median after warm-up) and peak extra CUDA memory.

    python -m strsr.bench.kernels_fdl --sizes 256 512 1024 --json out/kernels_fdl.json

For an S x S input, layer i's spectra are (batch, C_i, S / s_i, S / s_i) with C = 64, 128, 256, 512, 512 at strides
s = 1, 2, 4, 8, 16 (relu1_2 .. relu5_4), complex64, with 256 unit projections of 5x5; the gradient goes to spec_x
only, as in the loss. Peak memory is max_memory_allocated during one forward+backward minus what was allocated
before it (inputs, projections). TFLOP/s counts the projection GEMMs only (forward: x and y, amplitude and phase;
backward: the transposed projection of x), not the sorts. `max_abs_diff` is |triton - reference| of the scores.
Needs a CUDA GPU: on a machine without one it says so and exits 0 (CI cannot run it).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
from pathlib import Path

import torch

from strsr.bench.report import write_json
from strsr.kernels.dispatch import triton_available
from strsr.kernels.spectral_sw import spectral_sliced_wasserstein

log = logging.getLogger("strsr.bench")

LAYERS = ((64, 1), (128, 2), (256, 4), (512, 8), (512, 16))  # (channels, stride) of relu1_2 .. relu5_4
BACKENDS = ("triton", "reference")


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    sizes: tuple[int, ...]
    num_proj: int
    patch_size: int
    batch: int
    warmup: int
    repeats: int

    def __post_init__(self):
        if any(s < 16 * self.patch_size or s % 16 for s in self.sizes):
            raise ValueError(f"sizes must be multiples of 16 and >= {16 * self.patch_size}, got {self.sizes}")
        if min(self.num_proj, self.patch_size, self.batch, self.repeats) < 1 or self.warmup < 0:
            raise ValueError("num_proj, patch_size, batch and repeats must be positive, warmup non-negative")


def projection_flops(batch: int, channels: int, side: int, num_proj: int, patch: int) -> float:
    positions = (side - patch + 1) ** 2
    forward = 2 * 2 * 2 * batch * positions * num_proj * channels * patch * patch  # x and y, |F| and angle F
    backward = 2 * 2 * batch * side * side * num_proj * channels * patch * patch  # transposed, x only
    return forward + backward


def measure(backend: str, spec_x, spec_y, proj, spec: BenchSpec) -> dict:
    def step():
        x = spec_x.detach().requires_grad_()
        out = spectral_sliced_wasserstein(x, spec_y, proj, backend=backend)
        (grad,) = torch.autograd.grad(out.sum(), x)
        return out.detach(), grad

    try:
        for _ in range(spec.warmup):
            step()
        torch.cuda.synchronize()
        times = []
        for _ in range(spec.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        score, _ = step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"error": "out of memory"}
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "peak_mib": peak / 2**20,
            "score": score}  # fmt: skip


def run(spec: BenchSpec) -> list[dict]:
    device = torch.device("cuda")
    gen = torch.Generator(device).manual_seed(0)
    records = []
    for size in spec.sizes:
        for layer, (channels, stride) in enumerate(LAYERS, start=1):
            side = size // stride
            shape = (spec.batch, channels, side, side)
            feats = [torch.relu(torch.randn(shape, device=device, generator=gen)) for _ in range(2)]
            spec_x, spec_y = (torch.fft.fftn(f, dim=(-2, -1)) for f in feats)  # (B, C, H, W) complex64
            del feats
            proj = torch.randn(spec.num_proj, channels, spec.patch_size, spec.patch_size, device=device, generator=gen)
            proj = proj / proj.flatten(1).norm(dim=1)[:, None, None, None]
            flops = projection_flops(spec.batch, channels, side, spec.num_proj, spec.patch_size)
            scores = {}
            for backend in BACKENDS:
                result = measure(backend, spec_x, spec_y, proj, spec)
                scores[backend] = result.pop("score", None)
                if "median_ms" in result:
                    result["proj_tflops"] = flops / (result["median_ms"] / 1e3) / 1e12
                records.append({"size": size, "layer": layer, "shape": list(shape), "num_proj": spec.num_proj,
                                "backend": backend, **result})  # fmt: skip
            if all(s is not None for s in scores.values()):
                diff = (scores["triton"] - scores["reference"]).abs().max().item()
                for r in records[-len(BACKENDS) :]:
                    r["max_abs_diff"] = diff
            del spec_x, spec_y, proj
            torch.cuda.empty_cache()
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.kernels_fdl", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="square input image sides")
    p.add_argument("--num-proj", type=int, default=256)
    p.add_argument("--patch-size", type=int, default=5)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2, help="untimed passes first (the first one compiles)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    spec = BenchSpec(tuple(args.sizes), args.num_proj, args.patch_size, args.batch, args.warmup, args.repeats)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if not torch.cuda.is_available():
        log.info("FDL kernel benchmark skipped: it needs a CUDA GPU")
        return 0
    if not triton_available():
        log.error("FDL kernel benchmark: triton is not installed")
        return 1
    import triton

    records = run(spec)
    log.info("%-6s %-5s %-22s %-9s %10s %10s %10s %9s %10s", "size", "layer", "spectrum", "backend", "median ms",
             "min ms", "peak MiB", "TFLOP/s", "max diff")  # fmt: skip
    for r in records:
        if "error" in r:
            log.info("%-6s %-5d %-22s %-9s %s", r["size"], r["layer"], r["shape"], r["backend"], r["error"])
            continue
        log.info("%-6s %-5d %-22s %-9s %10.2f %10.2f %10.1f %9.1f %10.2e", r["size"], r["layer"], str(r["shape"]),
                 r["backend"], r["median_ms"], r["min_ms"], r["peak_mib"], r["proj_tflops"],
                 r.get("max_abs_diff", float("nan")))  # fmt: skip
    write_json(args.json, records, gpu=torch.cuda.get_device_name(), triton=triton.__version__,
               cudnn_allow_tf32=torch.backends.cudnn.allow_tf32)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
