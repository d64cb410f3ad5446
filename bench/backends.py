"""The stages of one x4 pass, as zero-argument callables per backend, for `strsr-bench` to time.

Every backend exposes the same stages on the same inputs (one tile of `res` output pixels, `batch` images):
conditioning, vae_encode, dit (the one Euler step), vae_decode, one_pass (encode + step + decode on device
tensors), and upscale (the whole `SuperResolver`: bicubic, tiling above the tile size, blending, host copies).
A backend that cannot run here raises `Unavailable` with the reason; the benchmark lists it as skipped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from strsr.pipeline import SuperResolver

BACKENDS = ("eager", "compile", "onnx", "trt-fp16", "trt-fp8")


class Unavailable(RuntimeError):
    """This backend cannot run on this machine; the message says why."""


@dataclass
class StageSet:
    backend: str
    dtype: str  # the math precision, for the peak-FLOP lookup: bf16, fp16, fp8, tf32 or fp32
    stages: dict[str, Callable[[], object]]
    synchronous: bool = False  # runs outside torch's stream (ONNX Runtime, TensorRT): time with a wall clock


@dataclass(frozen=True)
class Inputs:
    """What the stages consume: a tile-sized image in [-1, 1] on the model's device and an LR batch in [0, 1]."""

    image: torch.Tensor
    lr: torch.Tensor

    @classmethod
    def make(cls, batch: int, res: int, tile: int, device: torch.device) -> Inputs:
        gen = torch.Generator().manual_seed(0)
        side = min(res, tile)
        image = (torch.rand(batch, 3, side, side, generator=gen) * 2 - 1).to(device)
        lr = torch.rand(batch, 3, res // 4, res // 4, generator=gen)
        return cls(image, lr)


def torch_stages(resolver: SuperResolver, inputs: Inputs, compiled: bool) -> StageSet:
    """Eager PyTorch, or `torch.compile` of each stage (CUDA graphs on GPU, where shapes are static)."""
    model = resolver.model
    codec = model.codec
    encode, step, decode = codec.encode, model.one_step, codec.decode
    if compiled:
        mode = "reduce-overhead" if model.device.type == "cuda" else None  # reduce-overhead = CUDA graphs
        encode, step, decode = (torch.compile(f, mode=mode) for f in (codec.encode, model.one_step, codec.decode))
    lr_on_device = inputs.lr.to(model.device)
    with torch.no_grad():
        condition = model.condition_for(inputs.lr.to(model.device))
        state = codec.encode(inputs.image)
        z0 = model.one_step(state, condition)
    upscaler = SuperResolver(_Stages(model, encode, step, decode), tile=resolver.tile, overlap=resolver.overlap)
    stages = {
        "conditioning": lambda: model.condition_for(lr_on_device),
        "vae_encode": lambda: encode(inputs.image),
        "dit": lambda: step(state, condition),
        "vae_decode": lambda: decode(z0),
        "one_pass": lambda: decode(step(encode(inputs.image), condition)),
        "upscale": lambda: upscaler.upscale_tensor(inputs.lr),
    }
    param = next(model.transformer.parameters())
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(param.dtype, "tf32" if param.is_cuda else "fp32")
    return StageSet("compile" if compiled else "eager", dtype, _no_grad(stages))


class _Stages:
    """A generator for `SuperResolver` made of (possibly compiled) stage functions."""

    def __init__(self, model, encode, step, decode):
        self.model, self.preset, self._encode, self._step, self._decode = model, model.preset, encode, step, decode

    @property
    def device(self) -> torch.device:
        return self.model.device

    def eval(self):
        return self

    def condition_for(self, lr):
        return self.model.condition_for(lr)

    def __call__(self, image, condition, generator=None):
        return self._decode(self._step(self._encode(image, generator), condition)).float()


def onnx_stages(engine_dir: Path, preset: str, resolver: SuperResolver, inputs: Inputs, vlm=None) -> StageSet:
    from strsr.onnx_backend import OnnxGenerator

    gen = OnnxGenerator(engine_dir, preset, vlm=vlm)
    image = inputs.image.float().cpu()
    cond = gen.condition_for(inputs.lr)
    condition = cond.tokens
    encoder_inputs = {"image": image, **_noise(gen, image)}
    state = torch.from_numpy(gen.run_stage("vae_encoder", **encoder_inputs))
    z0 = torch.from_numpy(gen.run_stage("dit_onestep", state=state, condition=condition))
    upscaler = SuperResolver(gen, tile=resolver.tile, overlap=resolver.overlap)
    stages = {
        "conditioning": lambda: gen.condition_for(inputs.lr),
        "vae_encode": lambda: gen.run_stage("vae_encoder", **encoder_inputs),
        "dit": lambda: gen.run_stage("dit_onestep", state=state, condition=condition),
        "vae_decode": lambda: gen.run_stage("vae_decoder", state=z0),
        "one_pass": lambda: gen(image, cond),
        "upscale": lambda: upscaler.upscale_tensor(inputs.lr),
    }
    dtype = {"fp16": "fp16", "fp8": "fp8"}.get(gen.manifest["precision"], "tf32")
    return StageSet("onnx", dtype, stages, synchronous=True)


def trt_stages(backend: str, engine_dir: Path | None, preset: str, resolver: SuperResolver, inputs: Inputs,
               vlm=None) -> StageSet:  # fmt: skip
    precision = backend.removeprefix("trt-")
    if engine_dir is None:
        raise Unavailable(f"no engines given: strsr-export --trt --precision {precision} --out DIR, "
                          f"then --engines {backend}=DIR")  # fmt: skip
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise Unavailable("TensorRT is not installed") from None
    if not torch.cuda.is_available():
        raise Unavailable("TensorRT needs an NVIDIA GPU; none is visible")
    from strsr.trt_backend import TrtGenerator

    gen = TrtGenerator(engine_dir, preset, cuda_graph=True, vlm=vlm)
    if gen.manifest["precision"] != precision:
        raise Unavailable(f"{engine_dir} holds {gen.manifest['precision']} engines, not {precision}")
    image = inputs.image.float()
    cond = gen.condition_for(inputs.lr.to(gen.device))
    condition = cond.tokens
    encoder_inputs = {"image": image, **_noise(gen, image)}
    state = gen.run_stage("vae_encoder", **encoder_inputs)
    z0 = gen.run_stage("dit_onestep", state=state, condition=condition)
    upscaler = SuperResolver(gen, tile=resolver.tile, overlap=resolver.overlap)
    stages = {
        "conditioning": lambda: gen.condition_for(inputs.lr.to(gen.device)),
        "vae_encode": lambda: gen.run_stage("vae_encoder", **encoder_inputs),
        "dit": lambda: gen.run_stage("dit_onestep", state=state, condition=condition),
        "vae_decode": lambda: gen.run_stage("vae_decoder", state=z0),
        "one_pass": lambda: gen(image, cond),
        "upscale": lambda: upscaler.upscale_tensor(inputs.lr),
    }
    return StageSet(backend, precision, stages, synchronous=True)


def _noise(gen, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The posterior noise a sampling export's encoder takes (nothing for a mode export)."""
    if not gen.latent.samples:
        return {}
    return {"noise": torch.randn(gen.latent.noise_shape(image.shape), device=image.device)}


def exported_for_bench(preset: str, tile: int, weights: list[str]) -> Path:
    """An ONNX export made for this run (in a temporary folder) when no --engines onnx=DIR is given."""
    from strsr.export.cli import main as export_main

    out = Path(tempfile.mkdtemp(prefix="strsr-bench-onnx-"))
    if export_main(["--preset", preset, "--out", str(out), "--tile", str(tile), *weights]) != 0:
        raise Unavailable(f"ONNX export of {preset} failed (see the log above)")
    return out


def _no_grad(stages: dict[str, Callable[[], object]]) -> dict[str, Callable[[], object]]:
    def wrap(fn):
        def run():
            with torch.no_grad():
                return fn()

        return run

    return {name: wrap(fn) for name, fn in stages.items()}
