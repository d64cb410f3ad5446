"""Benchmarks run end to end on CPU (values are measured, never asserted)."""

import json
import logging

import pytest
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
        pytest.skip("a GPU is present: the benchmark runs instead of saying it needs one")
    with caplog.at_level(logging.INFO, logger="strsr.bench"):
        assert kernels_attention.main([]) == 0
    assert "needs a CUDA GPU" in caplog.text


def test_bench_kernels_command_runs_without_a_gpu(tmp_path, caplog):
    from strsr.bench.cli import main

    with caplog.at_level(logging.INFO, logger="strsr.bench"):
        assert main(["kernels", "-o", str(tmp_path)]) == 0
    if not torch.cuda.is_available():
        assert "attention benchmark skipped" in caplog.text and "FDL kernel benchmark skipped" in caplog.text


def test_attention_flop_count():
    # 4 B H N^2 D forward: at B=1, H=24, N=4608, D=128 that is 0.261 TFLOP; backward adds 2.5x
    assert attention_flops(1, 24, 4608, 128, backward=False) == 4 * 24 * 4608**2 * 128
    assert attention_flops(1, 24, 4608, 128, backward=True) == 3.5 * 4 * 24 * 4608**2 * 128


def test_pipeline_bench_runs_every_cpu_runtime_and_writes_json(tmp_path):
    """The CI smoke run of `strsr-bench --preset tiny --device cpu --res 256` (timings are not asserted)."""
    from strsr.bench.cli import main

    out = tmp_path / "bench.json"
    code = main(["--preset", "tiny", "--device", "cpu", "--res", "256", "--repeats", "1", "--warmup", "1",
                 "-o", str(out), "--plot", str(tmp_path / "bench.png")])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    results = report["results"]
    by_runtime = {r["runtime"]: [] for r in results}
    for r in results:
        by_runtime[r["runtime"]].append(r)
    for runtime in ("eager", "compile", "onnx"):
        ran = {r["stage"]: r for r in by_runtime[runtime] if r["status"] == "ok"}
        assert {"vae_encode", "dit", "vae_decode", "one_pass", "upscale"} <= set(ran), runtime
        assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] for r in ran.values())
        assert ran["dit"]["tflop"] * 1e12 == report["flops"]["dit"]  # the count the throughput is based on
    for runtime in ("trt-fp16", "trt-fp8"):  # no engines given (and no TensorRT here): listed with the reason
        (skip,) = by_runtime[runtime]
        assert skip["status"] == "skipped" and "--engines" in skip["reason"]
    # the tiny preset's tokens are 8 px (a 4x pixel-shuffle VAE and 2x2 patches), not the full presets' 16
    assert report["flops"]["image_tokens"] == (256 // 8) ** 2
    assert set(report["references"]["floors_bf16_ms"]["dit"]) >= {"H100", "RTX A6000"}
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_references_peaks_and_floors():
    from strsr.bench import references

    refs = references.load()
    assert all(peer["source"] and peer["seconds"] > 0 for peer in refs["peers"])
    assert refs["paper"]["gpu"] == "NVIDIA RTX A6000" and refs["paper"]["seconds"] == []  # no numbers in the text
    assert references.peak_tflops("NVIDIA H100 PCIe", "bf16", refs) == 756.0  # PCIe listed before plain H100
    assert references.peak_tflops("NVIDIA H100 80GB HBM3", "fp8", refs) == 1978.9
    assert references.peak_tflops("NVIDIA RTX A6000", "fp8", refs) is None  # Ampere has no FP8
    assert references.peak_tflops("Some CPU", "bf16", refs) is None
    # 31 TFLOP at the H100's 989.4 TFLOP/s dense bf16 peak takes 31.33 ms
    assert abs(references.floors_ms(31e12, "bf16", refs)["H100"] - 31e12 / 989.4e12 * 1e3) < 1e-9


def test_fdl_ablation_pairs_runs_by_position_and_differences_each_pair():
    from pathlib import Path

    from strsr.bench.fdl_ablation import METRICS, arm_names, paired_differences
    from strsr.bench.tiny_eval import KINDS

    assert list(arm_names([Path("a")], [Path("b")])) == ["stage 2 + FDL", "stage 2, no FDL"]
    names = arm_names([Path("a1"), Path("a2")], [Path("b1"), Path("b2")])
    assert names == {"stage 2 + FDL #1": Path("a1"), "stage 2, no FDL #1": Path("b1"),
                     "stage 2 + FDL #2": Path("a2"), "stage 2, no FDL #2": Path("b2")}  # fmt: skip
    # pair 1: FDL 1 dB below no FDL on every metric; pair 2: 3 dB below
    offsets = {"stage 2 + FDL #1": 0.0, "stage 2, no FDL #1": 1.0, "stage 2 + FDL #2": 10.0, "stage 2, no FDL #2": 13.0}
    table = [{"kind": k, "method": m, **{metric: o + i for i, metric in enumerate(METRICS)}}
             for k in KINDS for m, o in offsets.items()]  # fmt: skip
    diffs = paired_differences(table, 2)
    assert len(diffs) == len(KINDS) * len(METRICS)
    for d in diffs:
        assert d["differences"] == [-1.0, -3.0] and (d["mean"], d["min"], d["max"]) == (-2.0, -3.0, -1.0)
