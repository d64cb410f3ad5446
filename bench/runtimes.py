"""The runtimes `strsr-bench` times, each a `strsr.generator.Generator`, and the one table of stages they share.

    eager     the PyTorch model, LoRA merged (as deployed)
    compile   the same model's stages through torch.compile (CUDA graphs on a GPU, where shapes are static)
    onnx      an strsr-export folder in ONNX Runtime
    trt-fp16, trt-fp8   strsr-export --trt engines in TensorRT

Every runtime runs the same stages on the same inputs (one tile of `res` output pixels, `batch` images):
conditioning, vae_encode, dit (the one Euler step), vae_decode, one_pass (encode + step + decode), and upscale
(the whole `SuperResolver`: bicubic, tiling above the tile size, blending, host copies). A runtime that cannot run
here raises `Unavailable` with the reason; the benchmark lists it as skipped.
"""

from __future__ import annotations

import tempfile
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


class CompiledGenerator:
    """The PyTorch model with each stage through `torch.compile` ("reduce-overhead", i.e. CUDA graphs, on a GPU)."""

    def __init__(self, model):
        mode = "reduce-overhead" if model.device.type == "cuda" else None
        self.model, self.preset = model, model.preset
        self.encode, self.one_step, self.decode = (torch.compile(f, mode=mode) for f in
                                                   (model.encode, model.one_step, model.decode))  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.model.device

    def eval(self) -> CompiledGenerator:
        return self

    def condition_for(self, lr):
        return self.model.condition_for(lr)

    def __call__(self, image, condition=None, generator=None):
        return self.decode(self.one_step(self.encode(image, generator), condition))


def torch_stages(resolver: SuperResolver, inputs: Inputs, compiled: bool) -> RuntimeStages:
    model = resolver.model
    generator = CompiledGenerator(model) if compiled else model
    upscaler = SuperResolver(generator, tile=resolver.tile, overlap=resolver.overlap)
    param = next(model.transformer.parameters())
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(param.dtype, "tf32" if param.is_cuda else "fp32")
    return RuntimeStages("compile" if compiled else "eager", dtype, stage_table(generator, upscaler, inputs))


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
    export(ExportSpec(spec.replace(device="cpu"), out, "fp32", tile, trt=False, force=False,
                      calibration=(sample_image(),), calibration_tiles=1, attention_op="onnxruntime"))  # fmt: skip
    return out


def _no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn()

    return run
