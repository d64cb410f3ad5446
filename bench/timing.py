"""The one timing routine of the benchmarks: torch.utils.benchmark's Timer (it synchronises CUDA around every
measurement), after a first call that is reported on its own (compilation, engine set-up, caches)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.benchmark import Timer


def measure(fn: Callable[[], object], *, warmup: int = 3, repeats: int = 10) -> dict:
    """first_call_ms, then median/p90/min of `repeats` timed calls (ms) after `warmup` calls, and the peak CUDA
    memory PyTorch allocated during them (None without a GPU; runtimes that allocate outside PyTorch, ONNX Runtime
    and TensorRT, are not seen)."""
    cuda = torch.cuda.is_available()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    first = (time.perf_counter() - start) * 1e3
    for _ in range(warmup - 1):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    times = sorted(timer.timeit(1).median * 1e3 for _ in range(repeats))
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, round(0.9 * (len(times) - 1)))],
        "min_ms": times[0],
        "first_call_ms": first,
        "runs": repeats,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }
