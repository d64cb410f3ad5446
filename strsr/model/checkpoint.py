"""strsr's own generator checkpoint: the trainable tensors in one safetensors file, tagged with what they fit.

Metadata records the preset, LoRA rank and conditioning mode ("vlm", "text" or "none"), so a checkpoint for another
model fails loudly instead of loading half its tensors; loading one into a model of another conditioning mode says
which flag builds the right model. Files written before the mode was recorded name the conditioning class instead
(NullConditioning, ...); `read_metadata` reads those as their mode. Files are written to a temporary name and
renamed (`strsr.io.atomic`), so a crash never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from strsr.io.atomic import atomic_write
from strsr.model.adapter import VLMConditioning
from strsr.model.conditioning import NullConditioning, PromptConditioning
from strsr.model.generator import StrSRGenerator
from strsr.model.lora import lora_rank_of

FORMAT = "strsr.generator.v1"
_CLASS_MODES = {"NullConditioning": "none", "PromptConditioning": "text", "VLMConditioning": "vlm"}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names the file and the mismatch."""


def conditioning_mode(model: StrSRGenerator) -> str:
    """The model's conditioning mode: "vlm" (the VLM dual encoder), "text" (a fixed prompt) or "none"."""
    for cls, mode in ((VLMConditioning, "vlm"), (PromptConditioning, "text"), (NullConditioning, "none")):
        if isinstance(model.conditioning, cls):
            return mode
    raise TypeError(f"unknown conditioning module {type(model.conditioning).__name__}")


def describe_generator(model: StrSRGenerator) -> dict[str, str]:
    return {
        "format": FORMAT,
        "preset": model.preset.name,
        "lora_rank": str(lora_rank_of(model.transformer) or 0),
        "conditioning": conditioning_mode(model),
    }


def save_generator(model: StrSRGenerator, path: str | Path) -> Path:
    """Write the model's trainable tensors atomically to `path` (.safetensors)."""
    tensors = {name: t.contiguous().cpu() for name, t in model.trainable_state_dict().items()}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=describe_generator(model)))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The file's metadata; a conditioning recorded as a class name (older files) is given as its mode."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if "conditioning" in meta:
        meta["conditioning"] = _CLASS_MODES.get(meta["conditioning"], meta["conditioning"])
    return meta


def checkpoint_lora_rank(path: str | Path, preset) -> int:
    """The LoRA rank a checkpoint was trained with (0: the whole transformer), the preset's if not recorded."""
    value = read_metadata(path).get("lora_rank", str(preset.lora_rank))
    if not value.isdigit():
        raise CheckpointError(f"{path}: its metadata says lora_rank {value!r}, not a number (a damaged or foreign "
                              "checkpoint)")  # fmt: skip
    return int(value)


def load_generator(model: StrSRGenerator, path: str | Path) -> None:
    """Load trainable tensors into `model`, refusing checkpoints made for another preset, rank or conditioning."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a strsr generator checkpoint (format {meta.get('format')!r})")
    want = describe_generator(model)
    for key, label in (("preset", "preset"), ("lora_rank", "LoRA rank")):
        if meta.get(key) != want[key]:
            raise CheckpointError(f"{path}: checkpoint is for {label} {meta.get(key)!r}, the model has {want[key]!r}")
    trained = meta.get("conditioning")
    if trained != want["conditioning"]:
        raise CheckpointError(
            f"{path}: checkpoint was trained with conditioning {trained!r}, this model is built for "
            f"{want['conditioning']!r}; pass --conditioning {trained} (strsr-upscale, strsr-export, strsr-bench) or "
            f"--set model.conditioning={trained} (strsr-train)"
        )
    tensors = load_file(str(path))
    params = dict(model.named_parameters())
    expected = set(model.trainable_state_dict())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    wrong_shape = sorted(k for k in expected & set(tensors) if tensors[k].shape != params[k].shape)
    problems = [
        f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if names
    ]
    if problems:
        raise CheckpointError(f"{path}: does not fit the model ({'; '.join(problems)})")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
