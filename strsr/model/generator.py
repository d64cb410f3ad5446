"""The StrSR generator: dual encoder, one Euler step of the DiT, VAE decode (paper §3.1-3.2).

    z_LR = E_VAE(x_up)                  (x_up: the LR image, bicubic x4 to the output size)
    v    = G(z_LR, t1, c)
    z0   = z_LR - t1 * v                (no noise is added)
    x    = D_VAE(z0)
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from strsr.model.adapter import VLMConditioning
from strsr.model.autoencoders import Autoencoder
from strsr.model.backbones import Condition, predict_velocity
from strsr.model.latents import LatentCodec
from strsr.model.lora import base_transformer
from strsr.presets import Preset


class StrSRGenerator(nn.Module):
    """Maps an upsampled LR image (B, 3, H, W) in [-1, 1], H and W multiples of the preset's pixel multiple, to the
    restored image of the same size (float32, not clamped).

    transformer:  the diffusers transformer, possibly wrapped by peft (LoRA).
    conditioning: a module returning a `Condition`: from the batch size (null embedding, prompt), or from the LR
                  images themselves (`VLMConditioning`); `condition_for(lr)` calls either.
    """

    def __init__(self, preset: Preset, transformer: nn.Module, vae: Autoencoder, conditioning: nn.Module,
                 latent: str = "sample"):  # fmt: skip
        super().__init__()
        self.preset = preset
        self.transformer = transformer
        self.codec = LatentCodec(preset.family, preset.latents, vae, latent)
        self.conditioning = conditioning
        vae.requires_grad_(False)

    @property
    def vae(self) -> Autoencoder:
        return self.codec.vae

    @property
    def device(self) -> torch.device:
        return self.codec.bn_mean.device

    @property
    def t1(self) -> float:
        return self.preset.t1

    def velocity(self, state: torch.Tensor, condition: Condition) -> torch.Tensor:
        return predict_velocity(self.preset, self.transformer, state, self.preset.model_t, condition)

    def _autocast(self):
        """bf16 weights on a GPU run under bf16 autocast, as the official scripts do (norms and softmax in fp32).
        Elsewhere no context at all: even a disabled autocast makes torch.export drop the module scopes the FP8
        export reads."""
        if self.device.type == "cuda" and self.transformer.dtype == torch.bfloat16:
            return torch.autocast("cuda", torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> the state z_LR; `generator` draws the VAE posterior sample (latent
        "sample"; None uses the global RNG, as the official scripts)."""
        with self._autocast():
            return self.codec.encode(image, generator)

    def one_step(self, state: torch.Tensor, condition: Condition) -> torch.Tensor:
        """z0 = z_LR - t1 * G(z_LR, t1, c), on the state tensor (B, C, h, w), float32; t1 in float32 as the
        official Euler step has it."""
        t1 = torch.tensor(self.preset.coeff_t / 1000, dtype=torch.float32, device=state.device)
        with self._autocast():
            return state.float() - t1 * self.velocity(state, condition)

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """State -> image (B, 3, H, W) float32, nominally in [-1, 1] (not clamped)."""
        with self._autocast():
            return self.codec.decode(state).float()

    @property
    def image_conditioned(self) -> bool:
        """True when the conditioning reads the LR image (the VLM dual encoder)."""
        return isinstance(self.conditioning, VLMConditioning)

    def condition_for(self, lr: torch.Tensor) -> Condition:
        """The conditioning for LR images (B, 3, h, w) in [0, 1], before upsampling; once per image, not per tile."""
        return self.conditioning(lr) if self.image_conditioned else self.conditioning(lr.shape[0])

    def forward(
        self, image: torch.Tensor, condition: Condition | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """`generator` draws the VAE posterior sample (latent "sample"); None uses the global RNG."""
        if condition is None:
            if self.image_conditioned:
                raise ValueError("VLM conditioning reads the LR image: pass condition=model.condition_for(lr)")
            condition = self.conditioning(image.shape[0])
        return self.decode(self.one_step(self.encode(image, generator), condition))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Exactly the parameters that train (LoRA or the whole DiT, and the null embedding), by name."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}

    @property
    def diffusers_transformer(self) -> nn.Module:
        return base_transformer(self.transformer)
