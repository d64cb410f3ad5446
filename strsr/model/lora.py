"""LoRA on a preset's transformer with peft, laid out as the official StrSR checkpoints expect.

The official training wraps the transformer with `peft.get_peft_model(LoraConfig(r, alpha, init="gaussian",
target_modules=<resolved names>))`, so adapter keys read `base_model.model.<module>.lora_A.default.weight`. We
resolve the same names (every nn.Linear whose dotted name ends with a target suffix) and wrap the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn


def resolve_lora_targets(model: nn.Module, suffixes: Iterable[str]) -> list[str]:
    """Dotted names of the Linear layers whose name ends with one of `suffixes` (on a dot boundary)."""
    suffixes = tuple(suffixes)
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name == s or name.endswith("." + s) for s in suffixes)
    ]
    if not names:
        raise ValueError(f"no Linear layer matches the LoRA targets {suffixes}")
    return names


def add_lora(transformer: nn.Module, targets: Iterable[str], *, rank: int, alpha: int) -> PeftModel:
    """Freeze `transformer` and wrap it with trainable LoRA adapters (B = 0, so outputs start unchanged).

    peft keeps adapter weights in fp32 when the base runs in bf16/fp16 (`autocast_adapter_dtype`), as training needs.
    """
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        init_lora_weights="gaussian",
        target_modules=resolve_lora_targets(transformer, targets),
    )
    return get_peft_model(transformer, config, autocast_adapter_dtype=True)


def lora_rank_of(model: nn.Module) -> int | None:
    """The LoRA rank of a peft-wrapped model, or None without adapters."""
    for name, param in model.named_parameters():
        if name.endswith("lora_A.default.weight"):
            return param.shape[0]
    return None


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights and return the plain diffusers transformer."""
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def base_transformer(model: nn.Module) -> nn.Module:
    """The diffusers transformer inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model
