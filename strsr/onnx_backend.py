"""Run an exported pipeline (`strsr-export` folder) in ONNX Runtime behind the generator interface that
`SuperResolver` uses, so tiling, padding and blending are the very same code as the PyTorch backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from strsr.backbones import Condition
from strsr.exported_conditioning import ExportedConditioning, ExportedLatent
from strsr.manifest import ManifestError, check_manifest
from strsr.presets import get_preset

_STAGES = ("vae_encoder", "dit_onestep", "vae_decoder")


class OnnxGenerator:
    """The three exported stages in ONNX Runtime sessions (CPU, or CUDA where onnxruntime-gpu is installed)."""

    device = torch.device("cpu")

    def __init__(self, engine_dir: str | Path, preset: str, providers: list[str] | None = None,
                 vlm: str | Path | None = None):  # fmt: skip
        import onnxruntime as ort

        self.engine_dir = Path(engine_dir)
        manifest = check_manifest(self.engine_dir, preset=preset)
        missing = [s for s in _STAGES if s not in manifest["graphs"]]
        if missing:
            raise ManifestError(f"{self.engine_dir}: export lacks graphs {', '.join(missing)}")
        self.preset = get_preset(preset)
        self.manifest = manifest
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.sessions = {
            stage: ort.InferenceSession(str(self.engine_dir / manifest["graphs"][stage]["file"]), providers=providers)
            for stage in (*_STAGES, *(["projector"] if "projector" in manifest["graphs"] else []))
        }
        self.conditioning = ExportedConditioning(self.engine_dir, manifest, self._project, vlm)
        self.latent = ExportedLatent.from_manifest(manifest)

    def eval(self) -> OnnxGenerator:
        return self

    def _project(self, features: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run_stage("projector", features=features))

    def condition_for(self, lr: torch.Tensor) -> Condition:
        return self.conditioning.condition_for(lr)

    def run_stage(self, stage: str, **inputs: torch.Tensor) -> np.ndarray:
        """One exported stage on CPU tensors; returns its output as a NumPy array."""
        feeds = {name: tensor.detach().float().cpu().numpy() for name, tensor in inputs.items()}
        return self.sessions[stage].run(None, feeds)[0]

    def __call__(self, image: torch.Tensor, condition: Condition | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """(B, 3, H, W) in [-1, 1] -> (B, 3, H, W); a sampling export's posterior noise is drawn from `generator`
        on the CPU in float32, the draws the PyTorch model makes there."""
        condition = (condition or self.conditioning(image.shape[0])).expand(image.shape[0])
        encoder_inputs = {"image": image}
        if self.latent.samples:
            encoder_inputs["noise"] = torch.randn(self.latent.noise_shape(image.shape), generator=generator)
        state = self.run_stage("vae_encoder", **encoder_inputs)
        z0 = self.run_stage("dit_onestep", state=torch.from_numpy(state), condition=condition.tokens)
        return torch.from_numpy(self.run_stage("vae_decoder", state=torch.from_numpy(z0)))
