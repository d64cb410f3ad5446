"""Conditioning for an exported pipeline, as its manifest records it: stored tokens (none, text), or the VLM run
in PyTorch with the exported adapter graph (`projector`) mapping its features into the DiT's width; and the
latent encoding it records (whether the encoder graph takes posterior noise, and of what shape)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from strsr.inference.manifest import MANIFEST, ManifestError, conditioning_entry, inside
from strsr.model.backbones import Condition


class ExportedConditioning:
    """`projector(features) -> tokens` runs the exported adapter; it is used only for VLM-conditioned exports."""

    def __init__(self, engine_dir: Path, manifest: dict, projector: Callable[[torch.Tensor], torch.Tensor],
                 vlm: str | Path | None = None, device: torch.device | str = "cpu"):  # fmt: skip
        entry = conditioning_entry(manifest, engine_dir / MANIFEST)
        self.mode = entry["mode"]
        self.tokens = self.encoder = None
        if self.mode != "vlm":
            self.tokens = load_condition(engine_dir, entry["file"], manifest).to(device)
            return
        if vlm is None:
            raise ManifestError(f"{engine_dir}: this export is VLM-conditioned; pass the Qwen3-VL folder (--vlm DIR)")
        if "projector" not in manifest["graphs"]:
            raise ManifestError(f"{engine_dir}: VLM-conditioned export lacks its projector graph")
        from strsr.model.vlm import VLMEncoder

        self.encoder = VLMEncoder.from_pretrained(vlm, device=device, prompt=entry["prompt"],
                                                  max_tokens=entry["max_tokens"])  # fmt: skip
        if self.encoder.width != entry["vlm_width"]:
            raise ManifestError(f"{vlm}: a {self.encoder.width}-wide VLM, the export's projector takes "
                                f"{entry['vlm_width']}")  # fmt: skip
        self.projector = projector

    def __call__(self, batch: int = 1) -> Condition:
        if self.tokens is None:
            raise ValueError("VLM conditioning reads the LR image: use condition_for(lr)")
        return Condition(self.tokens).expand(batch)

    def condition_for(self, lr: torch.Tensor) -> Condition:
        if self.encoder is None:
            return self(lr.shape[0])
        features, _ = self.encoder.encode(lr)  # rows share one prompt, so one length: no mask is needed
        return Condition(self.projector(features))


def load_condition(engine_dir: Path, name: str, manifest: dict) -> torch.Tensor:
    """The stored (1, L, D) conditioning tokens, checked against the width the exported DiT takes."""
    path = inside(engine_dir, name, "conditioning file")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for a corrupt header
        raise ManifestError(f"{path}: not a readable safetensors file ({err})") from None
    tokens = tensors.get("condition")
    dims = manifest["graphs"]["dit_onestep"].get("inputs", {}).get("condition", [])
    width = dims[-1] if dims and isinstance(dims[-1], int) else None
    if tokens is None or tokens.ndim != 3 or tokens.shape[0] != 1 or (width is not None and tokens.shape[2] != width):
        got = None if tokens is None else tuple(tokens.shape)
        raise ManifestError(f"{path}: conditioning tokens {got} do not fit the DiT graph (1, L, {width})")
    return tokens.float()


@dataclass(frozen=True)
class ExportedLatent:
    """A sampling export's encoder takes noise of (B, channels, H / vae_scale, W / vae_scale) beside the image."""

    samples: bool
    channels: int = 0
    vae_scale: int = 1

    @classmethod
    def from_manifest(cls, manifest: dict) -> ExportedLatent:
        entry = manifest.get("latent") or {"mode": "mode"}  # exports before the latent option: the mode
        if entry["mode"] == "mode":
            return cls(False)
        return cls(True, int(entry["channels"]), int(entry["vae_scale"]))

    def noise_shape(self, image_shape) -> tuple[int, int, int, int]:
        batch, _, height, width = image_shape
        return batch, self.channels, height // self.vae_scale, width // self.vae_scale
