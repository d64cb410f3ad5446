"""f_adapt of the paper's Eq. 5, z_VLM = f_adapt(E_VLM(x_LR)), and the conditioning module built on it.

The adapter maps Qwen3-VL hidden states into the DiT's conditioning space, where z_VLM takes the place of the base
model's text embedding: Linear(vlm_width -> D/2) -> SiLU -> Linear(D/2 -> D), with D the caption width (FLUX.2
klein 4B: joint_attention_dim 7680; Z-Image: cap_feat_dim 2560). It is an nn.Sequential so its state dict reads
`0.weight, 0.bias, 2.weight, 2.bias`, the official `projector.pth` layout. It trains with the LoRA; the VLM stays
frozen and outside the module tree.
"""

from __future__ import annotations

import torch
from torch import nn

from strsr.model.backbones import Condition
from strsr.model.vlm import VLMEncoder
from strsr.presets import QWEN3_VL_4B_WIDTH, Preset


class VLMAdapter(nn.Sequential):
    """(B, L, vlm_width) -> (B, L, condition_width), in the adapter's dtype."""

    def __init__(self, vlm_width: int, condition_width: int):
        if vlm_width <= 0 or condition_width <= 0 or condition_width % 2:
            raise ValueError(
                f"adapter needs positive widths and an even condition width, got {vlm_width} -> {condition_width}"
            )
        hidden = condition_width // 2
        super().__init__(nn.Linear(vlm_width, hidden), nn.SiLU(), nn.Linear(hidden, condition_width))
        self.vlm_width = vlm_width
        self.condition_width = condition_width


def adapter_for(preset: Preset, vlm_width: int = QWEN3_VL_4B_WIDTH) -> VLMAdapter:
    """The adapter from a VLM of text width `vlm_width` into `preset`'s conditioning width."""
    return VLMAdapter(vlm_width, preset.condition_width)


class VLMConditioning(nn.Module):
    """Per-image conditioning z_VLM: the frozen VLM's features of the LR image through the trainable adapter.

    encoder: a `VLMEncoder`, or None where features arrive precomputed (`from_features`), e.g. for checkpoint
             conversion or export. It is kept as a plain attribute: not a submodule, not in the state dict.
    """

    def __init__(self, adapter: VLMAdapter, encoder: VLMEncoder | None = None):
        super().__init__()
        if encoder is not None and encoder.width != adapter.vlm_width:
            raise ValueError(f"VLM gives {encoder.width}-wide features, the adapter expects {adapter.vlm_width}")
        self.adapter = adapter
        self.encoder = encoder

    def forward(self, lr_images: torch.Tensor) -> Condition:
        """LR images (B, 3, h, w) in [0, 1], before upsampling -> Condition (B, L, D), one VLM pass per new image."""
        if self.encoder is None:
            raise ValueError("this VLM conditioning has no VLM: give it a VLMEncoder or call from_features")
        return self.from_features(*self.encoder.encode(lr_images))

    def from_features(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> Condition:
        """VLM hidden states (B, L, vlm_width) and their (B, L) bool mask -> Condition in the DiT's width."""
        weight = self.adapter[0].weight
        tokens = self.adapter(features.to(weight.device, weight.dtype))
        if mask is not None:
            mask = mask.to(tokens.device).bool()
            mask = None if bool(mask.all()) else mask  # all-real rows need no mask (FLUX.2 ignores it anyway)
        return Condition(tokens, mask)
