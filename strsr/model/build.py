"""Build the `StrSRGenerator` a `ModelSpec` describes: weights, LoRA, conditioning, checkpoint, device, precision.

`build_generator` gives the model as it trains (LoRA adapters beside the frozen base); `build_inference_generator`
the model every inference path runs (strsr-upscale and `SuperResolver`, strsr-eval, strsr-bench, strsr-export): the
same weights with the LoRA merged, then optionally quantised (torchao) and compiled (regional torch.compile).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from strsr.model.adapter import VLMConditioning, adapter_for
from strsr.model.backbones import build_autoencoder, build_transformer, load_autoencoder, load_transformer
from strsr.model.checkpoint import checkpoint_lora_rank, load_generator
from strsr.model.conditioning import NullConditioning, load_text_encoder, prompt_conditioning
from strsr.model.generator import StrSRGenerator
from strsr.model.lora import add_lora, base_transformer, merge_lora
from strsr.model.official_checkpoint import is_official_checkpoint, load_official_checkpoint, official_lora_rank
from strsr.model.vlm import DEFAULT_VLM_PROMPT, VLMEncoder
from strsr.presets import Preset, get_preset
from strsr.spec import ModelSpec, SpecError, default_conditioning


def resolve_device(device: str = "auto") -> torch.device:
    """A spec's device: auto is the local rank's GPU under torchrun, else the GPU, else the CPU."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():  # meta and cpu are always there
        raise SpecError(f"--device {device}: CUDA is not available here")
    return torch.device(device)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """A spec's precision: auto is bf16 on a GPU, fp32 on a CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def bundled_weights(preset: Preset) -> Path | None:
    """The generator weights shipped inside the package for `preset`, if any."""
    if preset.bundled_weights is None:
        return None
    path = Path(str(resources.files("strsr") / "data" / "weights" / preset.bundled_weights))
    return path if path.is_file() else None


def checkpoint_for(spec: ModelSpec, preset: Preset) -> Path | None:
    """The spec's checkpoint; with none given, the preset's bundled weights when the spec asks for exactly what they
    were trained as (no base weights, not random, the preset's default conditioning)."""
    if spec.checkpoint is not None or spec.pretrained is not None or spec.random_weights:
        return spec.checkpoint
    return bundled_weights(preset) if spec.conditioning in (None, default_conditioning(spec.preset)) else None


def build_generator(spec: ModelSpec, *, preset: Preset | None = None) -> StrSRGenerator:
    """The generator `spec` describes, in eval mode, on its device and precision.

    Weights come from `spec.pretrained` (a diffusers-layout folder), or are random (`random_weights`, and always
    for the tiny presets, seeded by `seed`), then `checkpoint_for(spec)` is loaded: strsr's safetensors or an
    official StrSR folder (state_dict.pth + projector.pth), detected by its files. `lora_rank` None uses the
    checkpoint's rank, else the preset's; 0 trains the whole transformer.
    Conditioning "text" encodes the prompt once with the base text encoder (`text_encoder`, or `pretrained`'s);
    "vlm" reads each LR image with the Qwen3-VL in `vlm` (or, with `vlm_width`, builds the adapter alone).
    `preset` stands in for the registry's `spec.preset` (custom architectures, tests).
    """
    if spec.quantize != "none" or spec.compile:
        raise SpecError("--quantize and --compile are inference options: build_inference_generator applies them "
                        "(training runs the unquantised, uncompiled model)")  # fmt: skip
    preset = preset or get_preset(spec.preset)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.precision, device)
    conditioning = spec.mode
    if spec.pretrained is None and not (spec.random_weights or preset.tiny):
        raise SpecError(f"preset {preset.name!r} needs weights: pass a local diffusers folder (--pretrained DIR) "
                        "or --random-weights")  # fmt: skip
    check_conditioning_inputs(spec, preset)  # before the (possibly billions of) weights are built
    if spec.pretrained is not None:
        transformer = load_transformer(preset, spec.pretrained, dtype=dtype, device=device)
        vae = load_autoencoder(preset, spec.pretrained, dtype=dtype, device=device)
    else:
        transformer = build_transformer(preset, device=device, dtype=dtype, seed=spec.seed)
        vae = build_autoencoder(preset, device=device, dtype=dtype)

    checkpoint = checkpoint_for(spec, preset)
    official = checkpoint is not None and is_official_checkpoint(checkpoint)
    if official and conditioning != "vlm":
        raise SpecError(f"{checkpoint}: an official StrSR checkpoint is trained with VLM conditioning; "
                        f"use --conditioning vlm (not {conditioning!r})")  # fmt: skip
    lora_rank = spec.lora_rank
    if lora_rank is None and checkpoint is not None:
        # a checkpoint knows its own adapter rank (0: the whole transformer was trained)
        lora_rank = official_lora_rank(checkpoint) if official else checkpoint_lora_rank(checkpoint, preset)
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
        folder = spec.text_encoder or spec.pretrained
        text_encoder, tokenizer = load_text_encoder(folder, dtype=dtype, device=device)
        cond_module = prompt_conditioning(preset, text_encoder, tokenizer, spec.prompt).to(device)
    else:
        cond_module = _vlm_conditioning(preset, spec, dtype=dtype, device=device)

    if spec.attention != "sdpa":
        from strsr.model.attention_processors import set_attention_backend

        fused = spec.attention == "triton-fused"
        set_attention_backend(base_transformer(transformer), "triton", fused_prologue=fused)
    model = StrSRGenerator(preset, transformer, vae, cond_module, latent=spec.latent).eval()
    if checkpoint is not None:
        (load_official_checkpoint if official else load_generator)(model, checkpoint)
    return model


def check_conditioning_inputs(spec: ModelSpec, preset: Preset) -> None:
    """The folders the spec's conditioning mode reads are given (their contents are checked when loaded)."""
    if spec.mode == "text" and spec.text_encoder is None and spec.pretrained is None:
        raise SpecError("text conditioning needs the base model's text encoder: pass --pretrained DIR or "
                        "--text-encoder DIR")  # fmt: skip
    if spec.mode == "vlm" and spec.vlm_width is None and spec.vlm is None:
        random = " (random weights default to --conditioning none)" if spec.random_weights else ""
        raise SpecError(f"VLM conditioning needs a local Qwen3-VL folder: pass --vlm DIR (or --conditioning "
                        f"text|none){random}")  # fmt: skip


def build_inference_generator(spec: ModelSpec, *, preset: Preset | None = None,
                              compile_backend: str | None = None) -> StrSRGenerator:  # fmt: skip
    """The generator as inference runs it: `build_generator(spec)`, the LoRA merged into the base weights (what the
    benchmark times is what users run, and quantised weights take no adapter; `lora_mode="unmerged"` keeps it beside
    them, as the official scripts run it), then `spec.quantize` (torchao, the
    DiT's linear layers but the high-precision ones) and `spec.compile` (each repeated DiT block through
    torch.compile with static shapes, `compile_backend` default inductor). Devices that cannot run the quantisation
    (fp8 needs compute capability 8.9+) are refused before anything is built."""
    from strsr.model.quantize import check_quantize_supported, quantize_transformer

    check_quantize_supported(spec.quantize, resolve_device(spec.device))
    model = build_generator(spec.replace(quantize="none", compile=False), preset=preset)
    model.requires_grad_(False)
    if spec.lora_mode == "merged":
        model.transformer = merge_lora(model.transformer)
    quantize_transformer(model.transformer, spec.quantize)
    if spec.compile:
        from strsr.model.compilation import DEFAULT_BACKEND, compile_blocks

        compile_blocks(model.transformer, backend=compile_backend or DEFAULT_BACKEND)
    return model


def _vlm_conditioning(preset: Preset, spec: ModelSpec, *, dtype, device) -> VLMConditioning:
    encoder = None
    if spec.vlm_width is None:
        # the VLM only reads images: its features are cast to the adapter, which trains in float32
        encoder = VLMEncoder.from_pretrained(spec.vlm, dtype=dtype, device=device,
                                             prompt=spec.prompt or DEFAULT_VLM_PROMPT)  # fmt: skip
    with torch.device(device):
        adapter = adapter_for(preset, encoder.width if encoder is not None else spec.vlm_width)
    return VLMConditioning(adapter, encoder)
