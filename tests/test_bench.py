"""Benchmarks run end to end on CPU (values are measured, never asserted)."""

import json
import logging

import torch

from strsr.bench import kernels_attention, upscale_cpu
from strsr.bench.kernels_attention import attention_flops


def test_upscale_benchmark_writes_json(tmp_path):
    assert upscale_cpu.main(["--sizes", "16", "--repeats", "1", "--json", str(tmp_path / "b.json")]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["results"][0]["out"] == 64 and report["results"][0]["median_s"] > 0
    assert report["env"]["torch"] == torch.__version__


def test_attention_benchmark_needs_a_gpu_and_says_so(caplog):
    if torch.cuda.is_available():
        return
    with caplog.at_level(logging.INFO, logger="strsr.bench"):
        assert kernels_attention.main([]) == 0
    assert "needs a CUDA GPU" in caplog.text


def test_bench_kernels_command_runs_without_a_gpu(tmp_path, caplog):
    from strsr.bench.cli import main

    with caplog.at_level(logging.INFO, logger="strsr.bench"):
        assert main(["kernels", "--out", str(tmp_path)]) == 0
    if not torch.cuda.is_available():
        assert "attention benchmark skipped" in caplog.text and "FDL kernel benchmark skipped" in caplog.text


def test_attention_flop_count():
    # 4 B H N^2 D forward: at B=1, H=24, N=4608, D=128 that is 0.261 TFLOP; backward adds 2.5x
    assert attention_flops(1, 24, 4608, 128, backward=False) == 4 * 24 * 4608**2 * 128
    assert attention_flops(1, 24, 4608, 128, backward=True) == 3.5 * 4 * 24 * 4608**2 * 128
