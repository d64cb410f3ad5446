"""Quantising the DiT for PyTorch inference with torchao, and the one list of layers kept in high precision.

    fp8          row-wise FP8 (E4M3) dynamic activation and weight quantisation of the DiT's linear layers
                 (`Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())`): FP8 tensor-core matmuls, so only
                 on GPUs of compute capability 8.9+ (Ada, Hopper, Blackwell).
    int8-weight  int8 weights with one scale per output row, dequantised into the model precision for the matmul
                 (`Int8WeightOnlyConfig()`): half the weight memory of bf16, any device.

Only the DiT's `nn.Linear` layers are quantised, after the LoRA is merged (quantised weights take no adapter); the
VAE, the VLM and its adapter, and the layers named by `HIGH_PRECISION_MODULES` keep the model's precision. The ONNX
FP8 path (`strsr.export.fp8`) keeps the very same layers out of its Q/DQ graph.
"""

from __future__ import annotations

import torch
from torch import nn

from strsr.spec import QUANTIZE_MODES, SpecError

# Module-name fragments of the DiT layers kept out of quantisation, for both families (FLUX.2: x_embedder,
# context_embedder, time_guidance_embed, *_modulation*, norm_out, proj_out; Z-Image: all_x_embedder, t_embedder,
# cap_embedder, adaLN_modulation, all_final_layer). They are small (a few percent of the FLOPs) and sensitive:
# FP8 everywhere breaks Z-Image-Turbo (LPIPS 0.74 vs 0.07 with these kept).
HIGH_PRECISION_MODULES = ("embed", "modulation", "adaLN", "norm_out", "proj_out", "final_layer")
# FP8 matmuls (torch._scaled_mm) need the tensor cores of compute capability 8.9 and above.
FP8_MIN_CAPABILITY = (8, 9)


def keeps_high_precision(name: str) -> bool:
    """True for a module (a dotted name, or an exporter's name scope) that is never quantised."""
    return any(fragment in name for fragment in HIGH_PRECISION_MODULES)


def quantizable_linears(transformer: nn.Module) -> list[str]:
    """Dotted names of the DiT's linear layers that `quantize_transformer` quantises."""
    return [name for name, m in transformer.named_modules() if type(m) is nn.Linear and not keeps_high_precision(name)]


def check_quantize_supported(mode: str, device: torch.device) -> None:
    """Refuse a mode this device cannot run, before anything is built; the message names the flag and the GPU."""
    if mode not in QUANTIZE_MODES:
        raise SpecError(f"--quantize {mode!r}: choose from {', '.join(QUANTIZE_MODES)}")
    if mode != "fp8":
        return
    need = (f"compute capability {_capability(FP8_MIN_CAPABILITY)}+ (sm_89+: Ada, Hopper, Blackwell, with FP8 tensor "
            "cores)")
    if device.type != "cuda":
        raise SpecError(f"--quantize fp8 needs an NVIDIA GPU of {need}; the model runs on {device.type}: use "
                        "--quantize int8-weight")  # fmt: skip
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < FP8_MIN_CAPABILITY:
        raise SpecError(f"--quantize fp8 needs {need}; {torch.cuda.get_device_name(device)} is {major}.{minor}: use "
                        "--quantize int8-weight")  # fmt: skip


def _capability(capability: tuple[int, int]) -> str:
    return f"{capability[0]}.{capability[1]}"


def require_torchao():
    try:
        import torchao.quantization
    except ImportError as err:
        raise SpecError(f"--quantize needs torchao ({err}); install it with: pip install 'strsr[quant]'") from None
    return torchao.quantization


def quantize_transformer(transformer: nn.Module, mode: str) -> list[str]:
    """Quantise `transformer`'s linear layers in place (all but the high-precision ones); returns their names.

    The transformer must be plain (LoRA merged): a peft layer would keep its adapter in high precision beside a
    quantised base and its `merge` would no longer be exact."""
    if mode == "none":
        return []
    if any(hasattr(m, "lora_A") for m in transformer.modules()):
        raise ValueError("merge the LoRA before quantising (strsr.model.lora.merge_lora)")
    check_quantize_supported(mode, next(transformer.parameters()).device)
    ao = require_torchao()
    names = set(quantizable_linears(transformer))
    if mode == "fp8":
        config = ao.Float8DynamicActivationFloat8WeightConfig(granularity=ao.PerRow())
    else:
        config = ao.Int8WeightOnlyConfig()
    ao.quantize_(transformer, config, filter_fn=lambda module, fqn: fqn in names)
    return sorted(names)
