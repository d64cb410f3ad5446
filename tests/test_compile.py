"""`--compile`: regional torch.compile of the DiT's repeated blocks gives the eager output, and the benchmark's rows
for every PyTorch mode (eager, compile, int8-weight; fp8 reported as not run on a CPU). Compilation here uses the
"aot_eager" backend (the same traced graphs, no code generation); its time is reported by strsr-bench, not tested."""

import pytest
import torch
from skimage import data

from strsr.bench import pipeline_bench
from strsr.inference.pipeline import SuperResolver
from strsr.model.build import build_inference_generator
from strsr.model.compilation import compile_blocks, is_compiled, repeated_blocks
from strsr.spec import ModelSpec

# fp32 on a CPU: aot_eager runs the same ATen ops; measured max abs difference 0.0 for both tiny presets (inductor
# reorders reductions: a GPU run may differ by float rounding, hence a tolerance, not equality)
COMPILED_ATOL = 1e-5


def _photo(height=32, width=48):
    rgb = data.astronaut()[60 : 60 + height, 240 : 240 + width]
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def _expected_blocks(transformer) -> int:
    """Block count from the model's config (FLUX.2: double + single stream; Z-Image: main + two refiners)."""
    c = transformer.config
    if "num_layers" in c:
        return c.num_layers + c.num_single_layers
    return c.n_layers + 2 * c.n_refiner_layers


@pytest.mark.parametrize("preset", ["tiny", "tiny-zimage"])
def test_compiled_blocks_give_the_eager_output(preset):
    torch._dynamo.reset()
    spec = ModelSpec(preset=preset, device="cpu", random_weights=preset != "tiny", seed=4)
    lr = _photo()
    eager = SuperResolver(build_inference_generator(spec)).upscale_tensor(lr)
    model = build_inference_generator(spec.replace(compile=True), compile_backend="aot_eager")
    blocks = repeated_blocks(model.transformer)
    assert len(blocks) == _expected_blocks(model.transformer)
    assert all(is_compiled(b) for b in blocks)
    assert not is_compiled(model.transformer) and not is_compiled(model.vae)  # regional: the blocks only
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = SuperResolver(model).upscale_tensor(lr)
    assert counters["stats"]["unique_graphs"] >= 1  # the blocks really went through dynamo
    diff = (compiled - eager).abs().max().item()
    assert diff <= COMPILED_ATOL, diff


def test_compile_needs_repeated_blocks():
    with pytest.raises(ValueError, match="names no repeated blocks"):
        compile_blocks(torch.nn.Linear(2, 2), backend="aot_eager")


def _bench(argv, monkeypatch):
    from strsr.bench import runtimes

    real = runtimes.torch_stages
    # the compile runtime's backend: aot_eager keeps this test in seconds on two CPU cores (strsr-bench: inductor)
    monkeypatch.setattr(runtimes, "torch_stages", lambda *a, **k: real(*a, **{**k, "compile_backend": "aot_eager"}))
    spec = pipeline_bench.parse(["--preset", "tiny", "--device", "cpu", "--res", "64", "--repeats", "1",
                                 "--warmup", "1", *argv])  # fmt: skip
    return pipeline_bench.run(spec)


def test_bench_rows_eager_and_compile(monkeypatch):
    torch._dynamo.reset()
    rows = _bench(["--runtimes", "eager,compile"], monkeypatch)["results"]
    assert {(r["runtime"], r["stage"], r["status"]) for r in rows} == {
        (runtime, stage, "ok") for runtime in ("eager", "compile") for stage in pipeline_bench.STAGES}
    compiled = [r for r in rows if r["runtime"] == "compile"]
    assert all(r["compile_s"] > 0 for r in compiled) and all("compile_s" not in r for r in rows if r not in compiled)


def test_bench_rows_int8_weight(monkeypatch):
    int8 = _bench(["--runtimes", "eager", "--quantize", "int8-weight"], monkeypatch)["results"]
    assert [r["stage"] for r in int8] == list(pipeline_bench.STAGES)
    assert all(r["status"] == "ok" and r["quantize"] == "int8-weight" and r["dtype"] == "fp32" for r in int8)


def test_bench_rows_fp8_on_a_cpu_are_not_run(monkeypatch):
    report = _bench(["--runtimes", "eager,compile", "--quantize", "fp8"], monkeypatch)
    fp8 = report["results"]
    assert [(r["runtime"], r["status"]) for r in fp8] == [("eager", "not run"), ("compile", "not run")]
    assert all(r["reason"].startswith("needs sm_89+") and r["quantize"] == "fp8" for r in fp8)
    assert "eager     -            not run: needs sm_89+ (the model runs on cpu" in pipeline_bench.table(report)


def test_random_weights_of_a_full_preset_need_no_vlm():
    """The README's `strsr-bench --res 1024 --preset flux2-klein-4b --random-weights`: null conditioning, no --vlm."""
    from strsr.model.build import build_generator, check_conditioning_inputs
    from strsr.presets import get_preset

    spec = pipeline_bench.parse(["--res", "1024", "--preset", "flux2-klein-4b", "--random-weights"]).model
    assert spec.mode == "none"
    check_conditioning_inputs(spec, get_preset(spec.preset))  # raises without --vlm for vlm conditioning
    assert ModelSpec(preset="flux2-klein-4b").mode == "vlm"  # trained weights keep the paper's conditioning
    model = build_generator(spec.replace(device="meta"))  # the 4B DiT's shapes only: no memory, no download
    assert type(model.conditioning).__name__ == "NullConditioning"
