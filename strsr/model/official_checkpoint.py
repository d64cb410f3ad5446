"""The official StrSR checkpoint layout: load it into a strsr generator, write it, and convert it to strsr's own.

An official checkpoint is a folder with two torch pickles of tensor dicts:
- `state_dict.pth`: the trainable parameters of the transformer wrapped by peft's `get_peft_model` (LoRA r = alpha,
  gaussian init, on the preset's resolved targets), keyed `base_model.model.<module>.lora_A.default.weight`;
- `projector.pth`: the VLM adapter's state dict (`0.weight`, `0.bias`, `2.weight`, `2.bias`).

strsr wraps its transformer the same way, so the mapping is by name: `transformer.` + the peft key (strsr's adapter
name in place of `default`), and the adapter module's prefix + the projector key. A model "template" (a
`StrSRGenerator`, on the meta device when only shapes are needed) defines what is expected; every file is checked
against it strictly (missing, unexpected, wrong shape, wrong LoRA rank, non-tensor values) and all problems are
reported in one `CheckpointError` before any tensor is copied.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from strsr.io.atomic import atomic_write
from strsr.model.adapter import VLMAdapter
from strsr.model.checkpoint import FORMAT, CheckpointError, describe_generator, read_metadata
from strsr.model.generator import StrSRGenerator

STATE_DICT = "state_dict.pth"
PROJECTOR = "projector.pth"
OFFICIAL_ADAPTER = "default"  # peft's adapter name in the official keys
_SHOWN = 3  # names listed per problem


def is_official_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a folder in the official layout (it holds `state_dict.pth`)."""
    return Path(path).is_dir() and (Path(path) / STATE_DICT).is_file()


@dataclass(frozen=True)
class OfficialLayout:
    """Where each trainable tensor of a strsr model lives in the official files, and its shape."""

    lora: dict[str, str]  # strsr name -> state_dict.pth key
    projector: dict[str, str]  # strsr name -> projector.pth key
    shapes: dict[str, torch.Size]  # strsr name -> shape
    rank: int

    def expected(self, names: dict[str, str]) -> dict[str, torch.Size]:
        """Official key -> shape for one file's mapping."""
        return {key: self.shapes[name] for name, key in names.items()}


def official_layout(model: StrSRGenerator) -> OfficialLayout:
    """The official layout of `model`'s trainable tensors; refuses models the official files cannot describe."""
    transformer = model.transformer
    if not isinstance(transformer, PeftModel):
        raise CheckpointError("official StrSR checkpoints hold LoRA adapters; this model has none (LoRA rank 0?)")
    adapter_name = transformer.active_adapter
    scales = {m.scaling[adapter_name] for m in transformer.modules() if hasattr(m, "scaling") and m.scaling}
    if scales != {1.0}:
        # Official checkpoints use lora_alpha = r; another scale would change what the same weights compute.
        raise CheckpointError(f"official checkpoints use LoRA scale 1 (alpha = rank); this model uses {sorted(scales)}")
    adapters = [name for name, m in model.named_modules() if isinstance(m, VLMAdapter)]
    if len(adapters) != 1:
        raise CheckpointError(
            f"official checkpoints pair the LoRA with one VLM adapter (projector.pth); this model has {len(adapters)} "
            f"(conditioning: {type(model.conditioning).__name__})"
        )
    adapter_prefix = adapters[0] + "."
    lora, projector, other = {}, {}, []
    shapes = {name: t.shape for name, t in model.trainable_state_dict().items()}
    for name in shapes:
        peft_key = name.removeprefix("transformer.")
        kind = next((k for k in ("lora_A", "lora_B") if peft_key.endswith(f".{k}.{adapter_name}.weight")), None)
        if kind and peft_key.startswith("base_model.model.") and name != peft_key:
            module = peft_key.removesuffix(f".{kind}.{adapter_name}.weight")
            lora[name] = f"{module}.{kind}.{OFFICIAL_ADAPTER}.weight"
        elif name.startswith(adapter_prefix):
            projector[name] = name.removeprefix(adapter_prefix)
        else:
            other.append(name)
    if other:
        raise CheckpointError(f"the official layout has no place for trainable {_names(other)}")
    if not lora:
        raise CheckpointError("this model trains no LoRA weights, the official layout holds nothing else")
    rank = next(shapes[n][0] for n, key in lora.items() if ".lora_A." in key)
    return OfficialLayout(lora, projector, shapes, rank)


def _names(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (f" ... ({len(names)} in all)" if len(names) > _SHOWN else "")


def _problems(label: str, found: dict, expected: dict[str, torch.Size], rank: int | None = None) -> list[str]:
    """Everything wrong with one file's tensors against the expected key -> shape, as short phrases."""
    not_tensor = sorted(k for k, v in found.items() if not isinstance(v, torch.Tensor))
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(
        f"{k} {tuple(found[k].shape)} != {tuple(expected[k])}"
        for k in set(found) & set(expected)
        if k not in not_tensor and found[k].shape != expected[k]
    )
    groups = {"not a tensor:": not_tensor, "missing": missing, "unexpected": unexpected, "wrong shape": wrong}
    problems = [f"{label}: {what} {_names(names)}" for what, names in groups.items() if names]
    if rank is not None:
        ranks = {v.shape[0] for k, v in found.items() if isinstance(v, torch.Tensor) and ".lora_A." in k and v.ndim}
        if ranks and ranks != {rank}:
            problems.insert(0, f"{label}: LoRA rank {', '.join(map(str, sorted(ranks)))}, the model has rank {rank}")
    return problems


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing {path.name} (the official layout needs {STATE_DICT} and {PROJECTOR})")
    try:
        # mmap: a rank-256 FLUX.2 LoRA is over a gigabyte; tensors are read only as they are copied
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a weights-only torch checkpoint of tensors ({first})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not a dict of named tensors")
    return data


def read_official_checkpoint(path: str | Path, layout: OfficialLayout) -> dict[str, torch.Tensor]:
    """The official folder's tensors under strsr's names, after checking both files against `layout`."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a folder (the official layout is a folder with {STATE_DICT}, {PROJECTOR})")
    files = {STATE_DICT: layout.lora, PROJECTOR: layout.projector}
    found = {file: _load_pickle(path / file) for file in files}
    problems = [
        p
        for file, names in files.items()
        for p in _problems(file, found[file], layout.expected(names), layout.rank if file == STATE_DICT else None)
    ]
    if problems:
        raise CheckpointError(f"{path}: official checkpoint does not fit the model ({'; '.join(problems)})")
    return {name: found[file][key] for file, names in files.items() for name, key in names.items()}


def official_lora_rank(path: str | Path) -> int:
    """The LoRA rank of an official checkpoint folder (to build a model that fits it)."""
    state = _load_pickle(Path(path) / STATE_DICT)
    ranks = {v.shape[0] for k, v in state.items() if ".lora_A." in k and isinstance(v, torch.Tensor) and v.ndim == 2}
    if len(ranks) != 1:
        raise CheckpointError(f"{path}: cannot tell the LoRA rank of {STATE_DICT} (lora_A ranks: {sorted(ranks)})")
    return ranks.pop()


def load_official_checkpoint(model: StrSRGenerator, path: str | Path) -> None:
    """Copy an official checkpoint into `model`'s LoRA and VLM adapter; nothing is copied if any check fails."""
    tensors = read_official_checkpoint(path, official_layout(model))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)


def _write_official(tensors: dict[str, torch.Tensor], layout: OfficialLayout, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file, names in ((STATE_DICT, layout.lora), (PROJECTOR, layout.projector)):
        data = {key: tensors[name].detach().contiguous().cpu() for name, key in names.items()}
        atomic_write(out_dir / file, lambda tmp, data=data: torch.save(data, tmp))
    return out_dir


def save_official_checkpoint(model: StrSRGenerator, out_dir: str | Path) -> Path:
    """Write `model`'s LoRA and VLM adapter as an official checkpoint folder."""
    return _write_official(model.trainable_state_dict(), official_layout(model), out_dir)


def official_to_strsr(src: str | Path, dst: str | Path, template: StrSRGenerator) -> Path:
    """Convert an official folder into a strsr .safetensors checkpoint for models built like `template`."""
    tensors = read_official_checkpoint(src, official_layout(template))
    data = {name: t.contiguous() for name, t in tensors.items()}
    return atomic_write(Path(dst), lambda tmp: save_file(data, tmp, metadata=describe_generator(template)))


def strsr_to_official(src: str | Path, dst: str | Path, template: StrSRGenerator) -> Path:
    """Convert a strsr .safetensors checkpoint (made for models like `template`) into an official folder."""
    layout = official_layout(template)
    meta, want = read_metadata(src), describe_generator(template)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{src}: not a strsr generator checkpoint (format {meta.get('format')!r})")
    mismatched = [f"{k} {meta.get(k)!r} != {v!r}" for k, v in want.items() if k != "format" and meta.get(k) != v]
    if mismatched:
        raise CheckpointError(f"{src}: checkpoint is for another model ({'; '.join(mismatched)})")
    tensors = load_file(str(src))
    problems = _problems(Path(src).name, tensors, layout.shapes, rank=None)
    if problems:
        raise CheckpointError(f"{src}: does not fit the model ({'; '.join(problems)})")
    return _write_official(tensors, layout, dst)
