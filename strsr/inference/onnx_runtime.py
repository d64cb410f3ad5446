"""Run an exported pipeline (`strsr-export` folder) in ONNX Runtime as a `strsr.generator.Generator`, so tiling,
padding and blending are the very same code as for the PyTorch model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from strsr.inference.exported import ExportedConditioning, ExportedLatent
from strsr.inference.manifest import STAGES, ManifestError, check_manifest, inside
from strsr.model.backbones import Condition
from strsr.presets import get_preset


class OnnxGenerator:
    """The three exported stages in ONNX Runtime sessions (CPU, or CUDA where onnxruntime-gpu is installed)."""

    device = torch.device("cpu")

    def __init__(self, engine_dir: str | Path, preset: str, providers: list[str] | None = None,
                 vlm: str | Path | None = None, verify: bool = False):  # fmt: skip
        """`verify` also checks every file's sha256 against the manifest (sizes are always checked)."""
        import onnxruntime as ort

        self.engine_dir = Path(engine_dir)
        manifest = check_manifest(self.engine_dir, preset=preset, verify=verify)
        self.preset = get_preset(preset)
        self.manifest = manifest
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        stages = (*STAGES, *(["projector"] if "projector" in manifest["graphs"] else []))
        self.sessions = {stage: self._session(ort, stage, providers) for stage in stages}
        self.conditioning = ExportedConditioning(self.engine_dir, manifest, self._project, vlm)
        self.latent = ExportedLatent.from_manifest(manifest)

    def _session(self, ort, stage: str, providers: list[str]):
        path = inside(self.engine_dir, self.manifest["graphs"][stage]["file"], f"graph {stage!r}")
        options = ort.SessionOptions()
        if providers == ["CPUExecutionProvider"]:
            # On the CPU the arena and memory patterns make each stage allocate its working set again from the
            # second tile on (measured: 523 MiB after one tile, 1003 MiB after three); without them it stays flat.
            options.enable_cpu_mem_arena = False
            options.enable_mem_pattern = False
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as err:  # ONNX Runtime raises its own types for corrupt or foreign graphs
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ManifestError(f"{path}: ONNX Runtime cannot load this graph ({first})") from None

    def eval(self) -> OnnxGenerator:
        return self

    def _project(self, features: torch.Tensor) -> torch.Tensor:
        return self.run_stage("projector", features=features)

    def condition_for(self, lr: torch.Tensor) -> Condition:
        return self.conditioning.condition_for(lr)

    def run_stage(self, stage: str, **inputs: torch.Tensor) -> torch.Tensor:
        """One exported stage on CPU tensors; returns its output as a CPU float32 tensor."""
        feeds = {name: tensor.detach().float().cpu().numpy() for name, tensor in inputs.items()}
        return torch.from_numpy(self.sessions[stage].run(None, feeds)[0])

    def encode(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sampling export's posterior noise is drawn from `generator` on the CPU in float32: the draws the PyTorch
        model makes there."""
        inputs = {"image": image}
        if self.latent.samples:
            inputs["noise"] = torch.randn(self.latent.noise_shape(image.shape), generator=generator)
        return self.run_stage("vae_encoder", **inputs)

    def one_step(self, state: torch.Tensor, condition: Condition) -> torch.Tensor:
        return self.run_stage("dit_onestep", state=state, condition=condition.expand(state.shape[0]).tokens)

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return self.run_stage("vae_decoder", state=state)

    def __call__(self, image: torch.Tensor, condition: Condition | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """(B, 3, H, W) in [-1, 1] -> (B, 3, H, W)."""
        condition = condition or self.conditioning(image.shape[0])
        return self.decode(self.one_step(self.encode(image, generator), condition))
