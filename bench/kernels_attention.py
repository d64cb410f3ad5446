"""Attention kernel throughput against PyTorch SDPA (its best backend) at the FLUX.2 shape of a 1024 tile:
B=1, H=24, N=4096 image + 512 text tokens, D=128, bf16; forward and forward+backward; with and without the fused
RMSNorm + RoPE prologue (against SDPA plus separate norm and RoPE).

    python -m strsr.bench.kernels_attention --json out/attention.json

Needs a CUDA GPU: on a machine without one it says so and exits 0 (CI cannot run it).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

import torch

from strsr.bench.report import write_json
from strsr.kernels.attention import attention, attention_rmsnorm_rope, rmsnorm_rope_ref

log = logging.getLogger("strsr.bench")


def cuda_time(fn, warmup: int = 5, repeats: int = 20) -> float:
    """Median seconds of fn() with CUDA events, after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def attention_flops(batch: int, heads: int, tokens: int, head_dim: int, backward: bool) -> float:
    forward = 4 * batch * heads * tokens * tokens * head_dim  # QK^T and PV, 2 FLOP per MAC
    return forward * (3.5 if backward else 1.0)  # backward: 2.5x forward (recomputes QK^T)


def run(batch=1, heads=24, tokens=4096 + 512, head_dim=128, text=512, dtype=torch.bfloat16) -> list[dict]:
    device = torch.device("cuda")
    gen = torch.Generator(device).manual_seed(0)
    shape = (batch, heads, tokens, head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=gen, requires_grad=True) for _ in range(3))
    weights = torch.ones(2, head_dim, device=device, dtype=dtype)
    angles = torch.randn(tokens, head_dim // 2, device=device, generator=gen).repeat_interleave(2, -1)
    cos, sin = angles.cos(), angles.sin()
    grad = torch.randn(shape, device=device, dtype=dtype, generator=gen)

    def sdpa_prologue(q, k, v):
        qn = rmsnorm_rope_ref(q, weights, text, cos, sin, 1e-6)
        kn = rmsnorm_rope_ref(k, weights, text, cos, sin, 1e-6)
        return torch.nn.functional.scaled_dot_product_attention(qn, kn, v)

    variants = {
        "sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
        "triton": lambda: attention(q, k, v, backend="triton"),
        "sdpa+norm+rope": lambda: sdpa_prologue(q, k, v),
        "triton-fused": lambda: attention_rmsnorm_rope(q, k, v, weights, weights, cos, sin, text, backend="triton"),
    }
    records = []
    for name, fn in variants.items():
        for backward in (False, True):
            def step(fn=fn, backward=backward):
                out = fn()
                if backward:
                    out.backward(grad)

            seconds = cuda_time(step)
            flops = attention_flops(batch, heads, tokens, head_dim, backward)
            records.append({"variant": name, "pass": "fwd+bwd" if backward else "fwd", "ms": seconds * 1e3,
                            "tflops": flops / seconds / 1e12, "shape": list(shape), "dtype": str(dtype)})  # fmt: skip
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.kernels_attention", description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if not torch.cuda.is_available():
        log.info("attention benchmark skipped: it needs a CUDA GPU")
        return 0
    records = run()
    log.info("%-16s %-8s %9s %9s", "variant", "pass", "ms", "TFLOP/s")
    for r in records:
        log.info("%-16s %-8s %9.3f %9.1f", r["variant"], r["pass"], r["ms"], r["tflops"])
    write_json(args.json, records, gpu=torch.cuda.get_device_name())
    return 0


if __name__ == "__main__":
    sys.exit(main())
