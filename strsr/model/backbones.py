"""Build a preset's diffusers transformer and autoencoder, and call the transformer for a velocity.

Three ways to get weights: a local pretrained folder in the diffusers layout (`transformer/`, `vae/`, ...), random
weights built directly on the target device (benchmarks; no CPU copy, so memory is not doubled), or the meta
device (shapes, parameter counts and FLOPs without memory).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import Flux2Transformer2DModel, ZImageTransformer2DModel

from strsr.model.autoencoders import AUTOENCODER_CLASSES, Autoencoder
from strsr.model.latents import flux2_image_ids, flux2_text_ids, pack_tokens, unpack_tokens
from strsr.presets import Preset
from strsr.spec import MissingWeightsError

TRANSFORMER_CLASSES = {"flux2": Flux2Transformer2DModel, "zimage": ZImageTransformer2DModel}


@dataclass
class Condition:
    """Conditioning tokens for the DiT.

    tokens: (B, L, D) in the transformer's conditioning width.
    mask:   (B, L) bool, True where a token is real; None means all are. FLUX.2 attends to all L tokens (its
            pipeline feeds padded prompts unmasked); Z-Image drops masked tokens, as its pipeline does.
    """

    tokens: torch.Tensor
    mask: torch.Tensor | None = None

    def expand(self, batch: int) -> Condition:
        if self.tokens.shape[0] == batch:
            return self
        if self.tokens.shape[0] != 1:
            raise ValueError(f"condition batch {self.tokens.shape[0]} does not match image batch {batch}")
        mask = None if self.mask is None else self.mask.expand(batch, -1)
        return Condition(self.tokens.expand(batch, -1, -1), mask)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_transformer(
    preset: Preset, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int | None = None
) -> torch.nn.Module:
    """The preset's transformer with random weights, constructed in place on `device` (use "meta" for shape only)."""
    cls = TRANSFORMER_CLASSES[preset.family]
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device), _default_dtype(dtype):
        return cls(**preset.transformer_config)


def build_autoencoder(preset: Preset, *, device="cpu", dtype=torch.float32) -> Autoencoder:
    """A random-weight autoencoder of the preset's kind and config."""
    cls = AUTOENCODER_CLASSES[preset.latents.autoencoder]
    with torch.device(device), _default_dtype(dtype):
        return cls(**preset.vae_config)


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise MissingWeightsError(f"{path}: missing {what}")


def _require_weights(folder: Path, what: str) -> None:
    _require(folder / "config.json", f"{what} config")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise MissingWeightsError(f"{folder}: no {what} weights (*.safetensors or *.bin)")


def load_transformer(preset: Preset, pretrained: str | Path, *, dtype: torch.dtype, device="cpu") -> torch.nn.Module:
    """The transformer from `<pretrained>/transformer`, checked against the preset's architecture."""
    folder = Path(pretrained) / "transformer"
    _require_weights(folder, "transformer")
    cls = TRANSFORMER_CLASSES[preset.family]
    model = cls.from_pretrained(folder, torch_dtype=dtype, local_files_only=True).to(device)
    mismatched = {
        key: (model.config[key], want)
        for key, want in preset.transformer_config.items()
        if key in model.config and _normalise(model.config[key]) != _normalise(want)
    }
    if mismatched:
        details = ", ".join(f"{k}={got} (preset: {want})" for k, (got, want) in sorted(mismatched.items())[:5])
        raise ValueError(f"{folder}: transformer does not match preset {preset.name!r}: {details}")
    return model


def load_autoencoder(preset: Preset, pretrained: str | Path, *, dtype: torch.dtype, device="cpu") -> Autoencoder:
    folder = Path(pretrained) / "vae"
    _require_weights(folder, "VAE")
    cls = AUTOENCODER_CLASSES[preset.latents.autoencoder]
    vae = cls.from_pretrained(folder, torch_dtype=dtype, local_files_only=True).to(device)
    channels = getattr(vae.config, "latent_channels", None)
    if channels is not None and channels != preset.latents.channels:
        raise ValueError(f"{folder}: VAE has {channels} latent channels, preset {preset.name!r} expects "
                         f"{preset.latents.channels}")  # fmt: skip
    if preset.family == "zimage":
        # The preset's decode convention bakes these in; a VAE with other values needs another preset.
        got = (vae.config.scaling_factor, vae.config.shift_factor)
        want = (preset.latents.scaling_factor, preset.latents.shift_factor)
        if got != want:
            raise ValueError(f"{folder}: VAE scaling/shift {got} differ from preset {preset.name!r}'s {want}")
    return vae


def _normalise(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def predict_velocity(
    preset: Preset, transformer: torch.nn.Module, state: torch.Tensor, model_t: int, condition: Condition
) -> torch.Tensor:
    """v = G(state, t, c) in the state's layout (B, C, h, w), float32, at the integer timestep `model_t` on the
    0-1000 scale of the paper's axis (1000 = noise).

    The timestep is built in float32 from the integer, as the official scripts do, whatever the model's dtype:
    flux2:  t = model_t / 1000 (the model scales it by 1000 itself); tokens with (0, y, x, 0) image ids.
    zimage: the model's time runs the other way, t = (1000 - model_t) / 1000, and it predicts the negated velocity.
    """
    batch, _, height, width = state.shape
    condition = condition.expand(batch)
    dtype = transformer.dtype
    steps = torch.full((batch,), model_t, device=state.device, dtype=torch.long)
    if preset.family == "flux2":
        tokens = pack_tokens(state).to(dtype)
        cond = condition.tokens.to(dtype)
        out = transformer(
            hidden_states=tokens,
            encoder_hidden_states=cond,
            timestep=steps / 1000,  # float32
            img_ids=flux2_image_ids(height, width, device=state.device),
            txt_ids=flux2_text_ids(cond.shape[1], device=state.device),
            return_dict=False,
        )[0]
        return unpack_tokens(out.float(), height, width)
    latents = list(state.to(dtype).unsqueeze(2).unbind(0))  # B x (C, 1, h, w)
    caps = [c if m is None else c[m] for c, m in zip(condition.tokens.to(dtype), _rows(condition.mask, batch))]
    out = transformer(latents, (1000 - steps) / 1000, caps, return_dict=False)[0]
    return -torch.stack([o.float() for o in out]).squeeze(2)


def _rows(mask: torch.Tensor | None, batch: int):
    return [None] * batch if mask is None else list(mask.bool())
