"""The `Generator` protocol: what the tiled pipeline and the benchmark need of a runtime of the one-step model.

Three runtimes implement it: the PyTorch model (`strsr.model.StrSRGenerator`), an exported folder in ONNX Runtime
(`strsr.onnx_backend.OnnxGenerator`) and its TensorRT engines (`strsr.trt_backend.TrtGenerator`). Images are in the
model's [-1, 1] range; the state is the tensor the Euler step acts on (`strsr.model.latents`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from strsr.model.backbones import Condition
from strsr.presets import Preset


@runtime_checkable
class Generator(Protocol):
    preset: Preset

    @property
    def device(self) -> torch.device: ...

    def eval(self) -> Generator: ...

    def condition_for(self, lr: torch.Tensor) -> Condition:
        """The conditioning for LR images (B, 3, h, w) in [0, 1]: once per image, before tiling."""
        ...

    def encode(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Upsampled tile (B, 3, H, W) -> state; `generator` draws a sampling encoder's posterior noise."""
        ...

    def one_step(self, state: torch.Tensor, condition: Condition) -> torch.Tensor:
        """z0 = z_LR - t1 * G(z_LR, t1, c)."""
        ...

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """State -> image (B, 3, H, W), float32, not clamped."""
        ...

    def __call__(self, image: torch.Tensor, condition: Condition | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """decode(one_step(encode(image), condition)): one model pass on a tile."""
        ...
