"""`ModelSpec`: the one description of which generator to build, shared by every entry point.

`strsr-upscale`, `-export`, `-bench`, `-eval`, `-convert`, `-train` (its recipe's `[model]` table) and the Python API
all fill in this frozen dataclass, so an option is declared once and means the same everywhere; `build_generator`
takes nothing else. This module imports no torch, so command-line parsers are built (and `--help` answers) without
loading PyTorch, diffusers or peft; the heavy imports happen after parsing.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from strsr.presets import PRESETS, get_preset

# The paper's three conditioning arms: the VLM dual encoder (Eq. 5), the base model's text encoder on a prompt, and
# a learned null embedding.
CONDITIONING_MODES = ("vlm", "text", "none")
# VAE encoding: a posterior draw (the official scripts'), or its mode.
LATENT_MODES = ("sample", "mode")
# Attention kernels in the DiT: PyTorch's SDPA, or strsr's Triton kernels (the fused one applies RMSNorm + RoPE).
ATTENTION_KERNELS = ("sdpa", "triton", "triton-fused")
# Weights and math of the PyTorch model; auto is bf16 on a GPU, fp32 on a CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# PyTorch inference with torchao: row-wise FP8 activations and weights (GPUs of compute capability 8.9+), int8
# weights with high-precision math (any device), or none.
QUANTIZE_MODES = ("none", "int8-weight", "fp8")
# LoRA at inference: folded into the base weights (no adapter matmuls: 1/6 fewer DiT linear FLOPs at rank 256 on
# FLUX.2 klein's 3072-wide layers), or kept beside them as the official scripts run it (their images bit for bit;
# merged differs from them by float rounding, 3e-7 in [-1, 1] on the tiny preset).
LORA_MODES = ("merged", "unmerged")
# How [0, 1] floats become integer samples: floor is what the official scripts write (torchvision's ToPILImage).
ROUNDING_MODES = ("floor", "nearest")
_DEVICE = re.compile(r"^(auto|cpu|meta|cuda(:\d+)?)$")  # meta: shapes only, no memory (conversion, FLOP counts)


class SpecError(ValueError):
    """A model option that does not make sense; the message names the option (as a command-line flag)."""


class MissingWeightsError(FileNotFoundError):
    """A weight file or folder the options point to (or a metric needs) is not there; the message names it and says
    where it should be."""


def check_device(device: str) -> str:
    """`device` if it names a device strsr can run on: auto, cpu, cuda or cuda:N (availability is checked when the
    model is built)."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise SpecError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def default_conditioning(preset: str, *, random_weights: bool = False) -> str:
    """The paper's setting for full backbones; the tiny presets are trained without a prompt, and random weights
    (benchmarks) have no trained adapter to feed, so they get the null embedding too."""
    return "none" if get_preset(preset).tiny or random_weights else "vlm"


@dataclass(frozen=True)
class ModelSpec:
    """Which generator to build, from where, and how to run it."""

    preset: str = "tiny"
    pretrained: Path | None = None  # local diffusers folder of the base model (transformer/, vae/, ...)
    checkpoint: Path | None = None  # strsr .safetensors or an official StrSR folder; None: the preset's bundled ones
    random_weights: bool = False  # the exact architecture, untrained (benchmarks); tiny presets are always built so
    seed: int = 0  # random weights, and each image's VAE posterior sample at inference
    lora_rank: int | None = None  # None: the checkpoint's, else the preset's; 0: the whole transformer trains
    conditioning: str | None = None  # None: the preset's default (vlm for full presets, none for tiny)
    prompt: str = ""  # text conditioning's prompt; vlm: empty means the official StrSR prompt
    vlm: Path | None = None  # local Qwen3-VL folder (vlm conditioning)
    text_encoder: Path | None = None  # folder with text_encoder/ and tokenizer/ (text; default: pretrained)
    vlm_width: int | None = None  # vlm without a VLM: the adapter alone, for this feature width (conversion)
    attention: str = "sdpa"  # ATTENTION_KERNELS
    precision: str = "auto"  # PRECISIONS
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    latent: str = "sample"  # LATENT_MODES
    # inference only (strsr.model.build.build_inference_generator; training builds the unmerged model):
    compile: bool = False  # torch.compile the DiT's repeated blocks, static shapes
    quantize: str = "none"  # QUANTIZE_MODES, of the DiT's linear layers after the LoRA is merged
    lora_mode: str = "merged"  # LORA_MODES

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise SpecError(f"--preset {self.preset!r}: known presets are {', '.join(PRESETS)}")
        for name in ("pretrained", "checkpoint", "vlm", "text_encoder"):  # TOML and kwargs give strings
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        choices = {"conditioning": (self.conditioning, (*CONDITIONING_MODES, None)),
                   "latent": (self.latent, LATENT_MODES), "attention": (self.attention, ATTENTION_KERNELS),
                   "precision": (self.precision, PRECISIONS), "quantize": (self.quantize, QUANTIZE_MODES),
                   "lora-mode": (self.lora_mode, LORA_MODES)}  # fmt: skip
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                shown = ", ".join(a for a in allowed if a is not None)
                raise SpecError(f"--{name} {value!r}: choose from {shown}")
        check_device(self.device)
        if self.lora_rank is not None and self.lora_rank < 0:
            raise SpecError(f"--lora-rank {self.lora_rank}: must be 0 (the whole transformer) or positive")
        if self.random_weights and self.pretrained is not None:
            raise SpecError("--random-weights and --pretrained exclude each other")
        if self.quantize != "none" and self.lora_mode != "merged":
            raise SpecError(f"--quantize {self.quantize} needs --lora-mode merged (quantised weights take no adapter)")
        if self.vlm_width is not None and self.vlm_width <= 0:
            raise SpecError(f"vlm_width {self.vlm_width}: must be positive")

    @property
    def mode(self) -> str:
        """The conditioning mode this spec builds (the default when none is given: `default_conditioning`; random
        weights with a checkpoint take the preset's, which the checkpoint was trained with)."""
        random = self.random_weights and self.checkpoint is None
        return self.conditioning or default_conditioning(self.preset, random_weights=random)

    def replace(self, **changes) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------------- command lines

    @staticmethod
    def add_args(parser: argparse.ArgumentParser, *, device: str = "auto", precision: bool = True,
                 title: str = "model") -> None:  # fmt: skip
        """The model options, as one argument group; `device` is the tool's default device, `precision` False for
        tools that choose the model precision themselves (strsr-export: from its graph precision)."""
        g = parser.add_argument_group(title)
        g.add_argument("--preset", default="tiny", choices=list(PRESETS), help="model preset")
        g.add_argument("--pretrained", type=Path, help="local diffusers folder of the base model (transformer/, vae/)")
        g.add_argument("--checkpoint", type=Path,
                       help="strsr generator weights (.safetensors) or an official StrSR folder (state_dict.pth, "
                            "projector.pth); default: the weights bundled with the preset, if any")  # fmt: skip
        g.add_argument("--random-weights", action="store_true", help="the exact architecture, untrained")
        g.add_argument("--seed", type=int, default=0, help="seed of random weights and of each image's latent sample")
        g.add_argument("--lora-rank", type=int, help="LoRA rank (default: the checkpoint's, else the preset's)")
        g.add_argument("--conditioning", choices=CONDITIONING_MODES,
                       help="vlm (the paper's dual encoder), text (the base text encoder on --prompt) or none "
                            "(a learned null embedding) (default: vlm for full presets, none for tiny ones and "
                            "random weights)")
        g.add_argument("--prompt", default="", help="the prompt for --conditioning text (vlm: the official one)")
        g.add_argument("--vlm", type=Path, help="local Qwen3-VL folder, for --conditioning vlm")
        g.add_argument("--text-encoder", type=Path,
                       help="folder with text_encoder/ and tokenizer/ for --conditioning text (default: "
                            "--pretrained)")  # fmt: skip
        g.add_argument("--attention", default="sdpa", choices=ATTENTION_KERNELS,
                       help="attention kernels: PyTorch's SDPA, or strsr's Triton kernels (GPU)")
        g.add_argument("--latent", default="sample", choices=LATENT_MODES,
                       help="VAE encoding: sample (the official scripts', seeded per image by --seed) or mode")
        if precision:
            g.add_argument("--precision", default="auto", choices=PRECISIONS,
                           help="model weights and math: auto is bf16 on a GPU, fp32 on a CPU")
        g.add_argument("--device", default=device, type=_device_arg, help="auto, cpu, cuda or cuda:N")
        g.add_argument("--compile", action="store_true",
                       help="PyTorch inference: torch.compile the DiT's repeated transformer blocks (static shapes: "
                            "the first tile of each size compiles)")  # fmt: skip
        g.add_argument("--quantize", default="none", choices=QUANTIZE_MODES,
                       help="PyTorch inference with torchao, after merging the LoRA: fp8 (row-wise FP8 activations "
                            "and weights, GPUs of compute capability 8.9+) or int8-weight (int8 weights, any device) "
                            "for the DiT's linear layers; embedders, modulation and output layers stay in the model "
                            "precision")  # fmt: skip
        g.add_argument("--lora-mode", default="merged", choices=LORA_MODES,
                       help="PyTorch inference: the LoRA merged into the base weights (faster), or unmerged beside "
                            "them as the official scripts run it (their images bit for bit; merged differs by float "
                            "rounding)")  # fmt: skip

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> ModelSpec:
        """The spec from a namespace filled by `add_args` (plus `overrides`, e.g. a precision chosen by the tool)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {name: getattr(args, name) for name in fields if hasattr(args, name)}
        return cls(**{**values, **overrides})


def _device_arg(text: str) -> str:
    try:
        return check_device(text)
    except SpecError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--device ")) from None


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every strsr command's help: an option's default after its text (unless the text already says it, or there is
    none to show), the description kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default is argparse.SUPPRESS or default in ("", [], ())
        shown = not nothing and "default" not in text
        if shown and action.option_strings:
            text += " (default: %(default)s)"
        return text
