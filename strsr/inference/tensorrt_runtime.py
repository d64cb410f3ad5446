"""Run the TensorRT engines of an `strsr-export --trt` folder as a `strsr.generator.Generator`.

Engines run on one CUDA stream with torch tensors as their buffers. For repeated calls at one static shape (every
full tile of an image), `cuda_graph=True` captures the three enqueues once and replays them, which removes the
per-layer launch overhead. An engine is refused before loading when the manifest says it was built by another
TensorRT version or for another GPU: TensorRT would fail later with a less clear message, or not at all.

Written against TensorRT 10's documented Python API and run only where TensorRT and a GPU exist (tests marked `trt`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from strsr.inference.exported import ExportedConditioning, ExportedLatent
from strsr.inference.manifest import STAGES, ManifestError, check_manifest, inside
from strsr.model.backbones import Condition
from strsr.presets import get_preset


def check_engine_host(section: dict | None, *, trt_version: str, gpu: str, compute_capability: str,
                      where: Path) -> None:  # fmt: skip
    """Refuse engines that were built elsewhere; the message says what differs and how to fix it."""
    if not section:
        raise ManifestError(f"{where}: no TensorRT engines in this export (run strsr-export --trt on this machine)")
    rebuild = "rebuild them here with strsr-export --trt --force"
    if section["version"] != trt_version:
        raise ManifestError(f"{where}: engines were built with TensorRT {section['version']}, this is "
                            f"TensorRT {trt_version}; {rebuild}")  # fmt: skip
    if section["compute_capability"] != compute_capability or section["gpu"] != gpu:
        raise ManifestError(f"{where}: engines were built for {section['gpu']} (sm {section['compute_capability']}), "
                            f"this GPU is {gpu} (sm {compute_capability}); {rebuild}")  # fmt: skip


def gpu_identity() -> dict:
    """The current GPU's name and compute capability: an engine runs only on the architecture it was built for."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}


class TrtGenerator:
    """The three engines as one callable: (B, 3, H, W) in [-1, 1] -> (B, 3, H, W)."""

    def __init__(self, engine_dir: str | Path, preset: str, cuda_graph: bool = False, vlm: str | Path | None = None,
                 verify: bool = False):  # fmt: skip
        try:
            import tensorrt as trt
        except ImportError:
            raise ManifestError("--backend trt needs TensorRT (pip install 'strsr[trt]'), not installed here") from None
        if not torch.cuda.is_available():
            raise ManifestError("--backend trt needs an NVIDIA GPU; none is visible (CUDA unavailable)")
        self.engine_dir = Path(engine_dir)
        manifest = check_manifest(self.engine_dir, preset=preset, verify=verify)
        section = manifest.get("tensorrt")
        check_engine_host(section, trt_version=trt.__version__, **gpu_identity(), where=self.engine_dir)
        self.preset = get_preset(preset)
        self.manifest = manifest
        self.device = torch.device("cuda")
        self.stream = torch.cuda.Stream()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._trt = trt
        self.engines, self.contexts = {}, {}
        missing = [s for s in STAGES if s not in section["engines"]]
        if missing:
            raise ManifestError(f"{self.engine_dir}: no TensorRT engines for {', '.join(missing)} (strsr-export --trt)")
        for stage in (*STAGES, *(["projector"] if "projector" in section["engines"] else [])):
            path = inside(self.engine_dir, section["engines"][stage]["file"], f"TensorRT engine {stage!r}")
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise ManifestError(f"{path}: TensorRT could not load this engine (corrupt or built elsewhere)")
            self.engines[stage] = engine
            self.contexts[stage] = engine.create_execution_context()
        self.conditioning = ExportedConditioning(self.engine_dir, manifest, self._project, vlm, device=self.device)
        self.latent = ExportedLatent.from_manifest(manifest)
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]] = {}

    def eval(self) -> TrtGenerator:
        return self

    def _project(self, features: torch.Tensor) -> torch.Tensor:
        return self.run_stage("projector", features=features).float()

    def condition_for(self, lr: torch.Tensor) -> Condition:
        return self.conditioning.condition_for(lr)

    def _torch_dtype(self, engine, name: str) -> torch.dtype:
        trt = self._trt
        return {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16}[
            engine.get_tensor_dtype(name)
        ]

    def _enqueue(self, stage: str, **inputs: torch.Tensor) -> torch.Tensor:
        """Bind inputs (cast to the engine's dtypes), allocate the output, enqueue on the stream."""
        engine, context = self.engines[stage], self.contexts[stage]
        output_name = None
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT:
                tensor = inputs[name].to(self.device, self._torch_dtype(engine, name)).contiguous()
                context.set_input_shape(name, tuple(tensor.shape))
                context.set_tensor_address(name, tensor.data_ptr())
            else:
                output_name = name
        output = torch.empty(tuple(context.get_tensor_shape(output_name)), device=self.device,
                             dtype=self._torch_dtype(engine, output_name))  # fmt: skip
        context.set_tensor_address(output_name, output.data_ptr())
        if not context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {stage}")
        # inputs cast here live on this stream: the caching allocator reuses them only after the enqueued work
        return output

    def run_stage(self, stage: str, **inputs: torch.Tensor) -> torch.Tensor:
        """One engine on its own, synchronised (what a per-stage benchmark times)."""
        with torch.cuda.stream(self.stream):
            out = self._enqueue(stage, **inputs)
        self.stream.synchronize()
        return out

    def _pipeline(self, image: torch.Tensor, condition: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        state = self._enqueue("vae_encoder", image=image, **({} if noise is None else {"noise": noise}))
        z0 = self._enqueue("dit_onestep", state=state, condition=condition)
        return self._enqueue("vae_decoder", state=z0)

    def _noise(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        """A sampling export's posterior noise, drawn from `generator` on the GPU."""
        if not self.latent.samples:
            return None
        return torch.randn(self.latent.noise_shape(image.shape), generator=generator, device=self.device)

    def encode(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = self._noise(image, generator)
        return self.run_stage("vae_encoder", image=image, **({} if noise is None else {"noise": noise}))

    def one_step(self, state: torch.Tensor, condition: Condition) -> torch.Tensor:
        tokens = condition.expand(state.shape[0]).tokens
        return self.run_stage("dit_onestep", state=state, condition=tokens).float()

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return self.run_stage("vae_decoder", state=state).float()

    def __call__(self, image: torch.Tensor, condition: Condition | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """(B, 3, H, W) in [-1, 1] -> (B, 3, H, W): the three engines enqueued back to back (or one CUDA graph)."""
        condition = (condition or self.conditioning(image.shape[0])).expand(image.shape[0]).tokens.to(self.device)
        image = image.to(self.device, torch.float32)
        noise = self._noise(image, generator)
        with torch.cuda.stream(self.stream):
            if not self.cuda_graph:
                out = self._pipeline(image, condition, noise)
            else:
                out = self._replay(image, condition, noise)
        self.stream.synchronize()
        return out.float()

    def _replay(self, image: torch.Tensor, condition: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Capture the three enqueues once per input shape, then replay with the inputs copied into place."""
        key = (tuple(image.shape), tuple(condition.shape))
        inputs = (image, condition) if noise is None else (image, condition, noise)
        if key not in self._graphs:
            static = tuple(t.clone() for t in inputs)
            static_noise = static[2] if noise is not None else None
            self._pipeline(static[0], static[1], static_noise)  # TensorRT sets itself up before capture
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                static_out = self._pipeline(static[0], static[1], static_noise)
            self._graphs[key] = (graph, static, static_out)
        graph, static, static_out = self._graphs[key]
        for target, value in zip(static, inputs):
            target.copy_(value)
        graph.replay()
        return static_out.clone()
