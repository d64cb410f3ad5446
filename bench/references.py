"""The published numbers and GPU peaks in `references.toml`, and the FLOP-bound floors derived from them."""

from __future__ import annotations

import tomllib
from importlib import resources


def load() -> dict:
    return tomllib.loads((resources.files("strsr.bench") / "references.toml").read_text())


def peak_tflops(gpu_name: str, dtype: str, references: dict | None = None) -> float | None:
    """Dense peak for `dtype` (bf16, fp16, fp8, tf32) of the first table entry contained in `gpu_name`."""
    for key, peaks in (references or load())["peaks"].items():
        if key in gpu_name:
            return peaks.get(dtype)
    return None


def floors_ms(flops: float, dtype: str, references: dict | None = None) -> dict[str, float]:
    """Time each GPU in the table needs for `flops` at its dense peak: no kernel can beat it."""
    peaks = (references or load())["peaks"]
    return {gpu: flops / (p[dtype] * 1e12) * 1e3 for gpu, p in peaks.items() if dtype in p}
