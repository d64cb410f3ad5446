"""The runtimes `strsr-bench` times, each a `strsr.inference.runtime.Generator`, and the one table of stages they share.

    eager     the PyTorch model as every inference path builds it (LoRA merged, `--quantize` applied)
    compile   the same model with its DiT blocks compiled (`--compile`: regional torch.compile, static shapes)
    onnx      an strsr-export folder in ONNX Runtime
    trt-fp16, trt-fp8   strsr-export --trt engines in TensorRT

Every runtime runs the same stages on the same inputs (one tile of `res` output pixels, `batch` images):
conditioning, vae_encode, dit (the one Euler step), vae_decode, one_pass (encode + step + decode), and upscale
(the whole `SuperResolver`: bicubic, tiling above the tile size, blending, host copies). A runtime that cannot run
here raises `Unavailable` with the reason; the benchmark lists it as skipped.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from strsr.inference.pipeline import SuperResolver
from strsr.inference.runtime import Generator
from strsr.spec import ModelSpec

RUNTIMES = ("eager", "compile", "onnx", "trt-fp16", "trt-fp8")


class Unavailable(RuntimeError):
    """This runtime cannot run on this machine; the message says why."""


@dataclass
class RuntimeStages:
    runtime: str
    dtype: str  # the math precision, for the peak-FLOP lookup: bf16, fp16, fp8, tf32 or fp32
    stages: dict[str, Callable[[], object]]
    quantize: str | None = None  # PyTorch runtimes: the --quantize mode
    compile_s: float | None = None  # compile: seconds of the first DiT call (tracing and code generation)


@dataclass(frozen=True)
class Inputs:
    """What the stages consume: a tile-sized image in [-1, 1] and an LR batch in [0, 1]."""

    image: torch.Tensor
    lr: torch.Tensor

    @classmethod
    def make(cls, batch: int, res: int, tile: int) -> Inputs:
        gen = torch.Generator().manual_seed(0)
        side = min(res, tile)
        image = torch.rand(batch, 3, side, side, generator=gen) * 2 - 1
        lr = torch.rand(batch, 3, res // 4, res // 4, generator=gen)
        return cls(image, lr)


def stage_table(generator: Generator, upscaler: SuperResolver, inputs: Inputs) -> dict[str, Callable[[], object]]:
    """The timed stages of any runtime, on its device; each runs under no_grad."""
    device = generator.device
    image, lr = inputs.image.to(device), inputs.lr.to(device)
    with torch.no_grad():
        condition = generator.condition_for(lr)
        state = generator.encode(image)
        z0 = generator.one_step(state, condition)
    stages = {
        "conditioning": lambda: generator.condition_for(lr),
        "vae_encode": lambda: generator.encode(image),
        "dit": lambda: generator.one_step(state, condition),
        "vae_decode": lambda: generator.decode(z0),
        "one_pass": lambda: generator(image, condition),
        "upscale": lambda: upscaler.upscale_tensor(inputs.lr),
    }
    return {name: _no_grad(fn) for name, fn in stages.items()}


def torch_stages(resolver: SuperResolver, inputs: Inputs, compiled: bool, quantize: str = "none",
                 compile_backend: str | None = None) -> RuntimeStages:  # fmt: skip
    """The PyTorch model's stages; `compiled` first compiles its DiT blocks in place (what `--compile` does, so time
    the eager runtime before this one) and measures the compilation on its own: `compile_s` is the first DiT call,
    which traces and compiles each block class at the tile's shape."""
    model = resolver.model
    compile_s = None
    if compiled:
        from strsr.model.compilation import DEFAULT_BACKEND, compile_blocks

        compile_blocks(model.transformer, backend=compile_backend or DEFAULT_BACKEND)
        with torch.no_grad():
            image, lr = inputs.image.to(model.device), inputs.lr.to(model.device)
            state, condition = model.encode(image), model.condition_for(lr)
            _synchronize(model.device)
            start = time.perf_counter()
            model.one_step(state, condition)
            _synchronize(model.device)
            compile_s = time.perf_counter() - start
    upscaler = SuperResolver(model, tile=resolver.tile, overlap=resolver.overlap)
    if quantize == "fp8":
        dtype = "fp8"
    else:  # int8 weight-only dequantises into the model precision for its matmuls
        param = next(model.transformer.parameters())
        dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(param.dtype, "tf32" if param.is_cuda else "fp32")
    return RuntimeStages("compile" if compiled else "eager", dtype, stage_table(model, upscaler, inputs),
                         quantize=quantize, compile_s=compile_s)  # fmt: skip


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def onnx_stages(engine_dir: Path, spec: ModelSpec, resolver: SuperResolver, inputs: Inputs) -> RuntimeStages:
    upscaler = SuperResolver.from_export(engine_dir, spec, runtime="onnx", tile=resolver.tile,
                                         overlap=resolver.overlap)  # fmt: skip
    generator = upscaler.model
    dtype = {"fp16": "fp16", "fp8": "fp8"}.get(generator.manifest["precision"], "tf32")
    return RuntimeStages("onnx", dtype, stage_table(generator, upscaler, inputs))


def trt_stages(runtime: str, engine_dir: Path | None, spec: ModelSpec, resolver: SuperResolver,
               inputs: Inputs) -> RuntimeStages:  # fmt: skip
    precision = runtime.removeprefix("trt-")
    if engine_dir is None:
        raise Unavailable(f"no engines given: strsr-export --trt --precision {precision} -o DIR, "
                          f"then --engines {runtime}=DIR")  # fmt: skip
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise Unavailable("TensorRT is not installed") from None
    if not torch.cuda.is_available():
        raise Unavailable("TensorRT needs an NVIDIA GPU; none is visible")
    upscaler = SuperResolver.from_export(engine_dir, spec, runtime="trt", tile=resolver.tile,
                                         overlap=resolver.overlap, cuda_graph=True)  # fmt: skip
    generator = upscaler.model
    if generator.manifest["precision"] != precision:
        raise Unavailable(f"{engine_dir} holds {generator.manifest['precision']} engines, not {precision}")
    return RuntimeStages(runtime, precision, stage_table(generator, upscaler, inputs))


def exported_for_bench(spec: ModelSpec, tile: int) -> Path:
    """An ONNX export made for this run (in a temporary folder) when no --engines onnx=DIR is given."""
    from strsr.export.cli import ExportSpec
    from strsr.export.exporter import export
    from strsr.inference.cli import sample_image

    out = Path(tempfile.mkdtemp(prefix="strsr-bench-onnx-"))
    model = spec.replace(device="cpu", quantize="none", compile=False)  # graphs are exported unquantised
    export(ExportSpec(model, out, "fp32", tile, trt=False, force=False, calibration=(sample_image(),),
                      calibration_tiles=1, attention_op="onnxruntime"))  # fmt: skip
    return out


def _no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn()

    return run
