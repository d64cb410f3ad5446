"""Assemble a `StrSRGenerator` for a preset: weights, LoRA, conditioning, checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from strsr.adapter import VLMConditioning, adapter_for
from strsr.autoencoders import LATENT_MODES
from strsr.backbones import build_autoencoder, build_transformer, load_autoencoder, load_transformer
from strsr.checkpoint import load_generator, read_metadata
from strsr.conditioning import CONDITIONING_MODES, NullConditioning, load_text_encoder, prompt_conditioning
from strsr.lora import add_lora, base_transformer
from strsr.model import StrSRGenerator
from strsr.official_checkpoint import is_official_checkpoint, load_official_checkpoint, official_lora_rank
from strsr.presets import Preset, get_preset
from strsr.vlm import DEFAULT_VLM_PROMPT, VLMEncoder


def build_generator(
    preset: Preset | str,
    *,
    pretrained: str | Path | None = None,
    random_weights: bool = False,
    checkpoint: str | Path | None = None,
    conditioning: str = "none",
    prompt: str = "",
    lora_rank: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    text_encoder=None,
    tokenizer=None,
    text_encoder_dir: str | Path | None = None,
    vlm: str | Path | None = None,
    vlm_encoder: VLMEncoder | None = None,
    vlm_width: int | None = None,
    attention_backend: str = "sdpa",
    latent: str = "sample",
) -> StrSRGenerator:
    """The generator for `preset`, in eval mode.

    Weights come from `pretrained` (a diffusers-layout folder), or are random (`random_weights`, and always for the
    tiny presets, seeded by `seed`). `lora_rank` None uses the checkpoint's rank, else the preset's; 0 trains the
    whole transformer.
    `conditioning="text"` encodes `prompt` once with the base text encoder (passed in, or from `text_encoder_dir`
    or `pretrained`, each holding text_encoder/ and tokenizer/). `conditioning="vlm"` reads each LR image with the
    Qwen3-VL in the local folder `vlm` (or `vlm_encoder`) and the prompt (default: the official one) through the
    adapter; without a VLM (`vlm_width` given) the adapter takes precomputed features (conversion, export).
    `checkpoint` is strsr's safetensors file, or a folder in the official release layout (state_dict.pth and
    projector.pth), detected by its files.
    `attention_backend`: "sdpa" (diffusers' processors) or "triton" / "triton-fused" (strsr's kernels, the latter
    with RMSNorm and RoPE fused into the kernel); the Triton ones are wired for FLUX.2 presets.
    `latent`: "sample" (a draw from the VAE posterior, as the official scripts encode) or "mode".
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if latent not in LATENT_MODES:
        raise ValueError(f"unknown latent mode {latent!r}; choose from {', '.join(LATENT_MODES)}")
    if conditioning not in CONDITIONING_MODES:
        raise ValueError(f"unknown conditioning {conditioning!r}; choose from {', '.join(CONDITIONING_MODES)}")
    if pretrained is not None:
        transformer = load_transformer(preset, pretrained, dtype=dtype, device=device)
        vae = load_autoencoder(preset, pretrained, dtype=dtype, device=device)
    elif random_weights or preset.tiny:
        transformer = build_transformer(preset, device=device, dtype=dtype, seed=seed)
        vae = build_autoencoder(preset, device=device, dtype=dtype)
    else:
        raise ValueError(
            f"preset {preset.name!r} needs weights: pass a local diffusers folder (--pretrained DIR) "
            "or --random-weights"
        )

    official = checkpoint is not None and is_official_checkpoint(checkpoint)
    if official and conditioning != "vlm":
        raise ValueError(f"{checkpoint}: an official StrSR checkpoint is trained with VLM conditioning; "
                         f"use --conditioning vlm (not {conditioning!r})")  # fmt: skip
    if lora_rank is None and checkpoint is not None:
        # a checkpoint knows its own adapter rank (0: the whole transformer was trained)
        lora_rank = official_lora_rank(checkpoint) if official else int(
            read_metadata(checkpoint).get("lora_rank", preset.lora_rank))  # fmt: skip
    rank = preset.lora_rank if lora_rank is None else lora_rank
    if rank > 0:
        # Keep the preset's alpha/rank ratio (1 for every preset) when the rank is overridden.
        alpha = preset.lora_alpha * rank // preset.lora_rank
        transformer = add_lora(transformer, preset.lora_targets, rank=rank, alpha=alpha)
    else:
        transformer.requires_grad_(True)

    if conditioning == "none":
        cond_module = NullConditioning(preset.condition_width, preset.num_null_tokens).to(device)
    elif conditioning == "text":
        if text_encoder is None or tokenizer is None:
            folder = text_encoder_dir or pretrained
            if folder is None:
                raise ValueError("text conditioning needs the base model's text encoder: pass --pretrained DIR "
                                 "or --text-encoder DIR")  # fmt: skip
            text_encoder, tokenizer = load_text_encoder(folder, dtype=dtype, device=device)
        cond_module = prompt_conditioning(preset, text_encoder, tokenizer, prompt).to(device)
    else:
        cond_module = _vlm_conditioning(preset, vlm, vlm_encoder, vlm_width, prompt, dtype=dtype, device=device)

    if attention_backend != "sdpa":
        from strsr.attention_processors import set_attention_backend

        fused = attention_backend == "triton-fused"
        backend = "triton" if fused else attention_backend
        set_attention_backend(base_transformer(transformer), backend, fused_prologue=fused)
    model = StrSRGenerator(preset, transformer, vae, cond_module, latent=latent).eval()
    if checkpoint is not None:
        (load_official_checkpoint if official else load_generator)(model, checkpoint)
    return model


def _vlm_conditioning(preset: Preset, folder, encoder, width, prompt: str, *, dtype, device) -> VLMConditioning:
    if encoder is None and folder is not None:
        # the VLM only reads images: its features are cast to the adapter, which trains in float32
        encoder = VLMEncoder.from_pretrained(folder, dtype=dtype, device=device, prompt=prompt or DEFAULT_VLM_PROMPT)
    if encoder is None and width is None:
        raise ValueError("VLM conditioning needs a local Qwen3-VL folder: pass --vlm DIR "
                         "(or --conditioning text|none)")  # fmt: skip
    with torch.device(device):
        adapter = adapter_for(preset, encoder.width if encoder is not None else width)
    return VLMConditioning(adapter, encoder)
