"""Expected GPU memory peak of StrSR inference per preset, weight precision and offload mode, computed on a CPU.

    python -m strsr.bench.gpu_memory [--tile 1024] [--json out/gpu_memory.json]

Weights: every component is built on the meta device (shapes only) and its parameter and buffer bytes are counted:
the DiT (bf16; fp8 puts strsr's quantisable linear layers, `strsr.model.quantize.quantizable_linears`, at 1 byte a
weight plus one fp32 scale per output row), the VAE (bf16), the VLM adapter (float32, as strsr keeps it) and
Qwen3-VL-4B-Instruct (bf16, from its config: 4.44 B parameters). Activations: a per-tile estimate from the shapes of
the largest step (formulas in `activation_bytes`), assuming PyTorch's fused SDPA kernels (no tokens x tokens score
matrix) and GroupNorm in float32 under bf16 autocast. A fixed 0.5 GB stands for the CUDA context and cuBLAS
workspaces. None of this is measured: every number is an estimate until a GPU measures it.

Modes: none keeps everything resident; model (`enable_model_cpu_offload`) holds the VLM and adapter while the VLM runs,
then the DiT, VAE and adapter for the tiles; sequential (`enable_sequential_cpu_offload`) holds one leaf module of
weights at a time beside the activations (the adapter stays resident).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

GB = 1e9
BF16, FP32 = 2, 4
CUDA_CONTEXT_BYTES = int(0.5 * GB)
# Qwen3-VL-4B-Instruct's config.json (the paper's VLM), the values that set its size.
QWEN3_VL_4B_CONFIG = dict(
    text_config=dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
    vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
                       patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                       deepstack_visual_indexes=[5, 11, 17]),
    tie_word_embeddings=True,
)  # fmt: skip
VLM_PROMPT_TOKENS = 96  # the official prompt and the chat template, about
PRESETS = ("tiny", "flux2-klein-4b", "zimage-turbo")
WEIGHTS = ("bf16", "fp8")
MODES = ("none", "model", "sequential")


@dataclass(frozen=True)
class Components:
    """Bytes of each component's weights, and of its largest leaf module (what sequential offload holds)."""

    transformer: int
    vae: int
    adapter: int
    vlm: int
    largest_leaf: dict


def _module_bytes(module, bytes_per_element=None) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * (bytes_per_element or t.element_size()) for t in tensors)


def _leaf_bytes(module, sizes) -> int:
    """The largest weight-holding leaf module of `module` (bytes), `sizes` giving a leaf's bytes."""
    return max((sizes(m) for m in module.modules() if not list(m.children())), default=0)


def transformer_bytes(preset_name: str, weights: str) -> tuple[int, int]:
    """(all bytes, largest leaf bytes) of a preset's DiT in bf16, or with fp8 linear layers as torchao stores them
    (1 byte per weight, one fp32 scale per output row; biases and the high-precision layers stay bf16)."""
    import torch

    from strsr.model.backbones import build_transformer
    from strsr.model.quantize import quantizable_linears
    from strsr.presets import get_preset

    model = build_transformer(get_preset(preset_name), device="meta", dtype=torch.bfloat16)
    quantized = set(quantizable_linears(model)) if weights == "fp8" else set()
    modules = dict(model.named_modules())
    ids = {id(modules[name]) for name in quantized}

    def size(module) -> int:
        if id(module) not in ids:
            return _module_bytes(module, BF16) if not list(module.children()) else 0
        bias = 0 if module.bias is None else module.bias.numel() * BF16
        return module.weight.numel() + module.out_features * FP32 + bias

    total = sum(size(m) for m in model.modules())
    return total, _leaf_bytes(model, size)


def vae_bytes(preset_name: str) -> tuple[int, int]:
    import torch

    from strsr.model.backbones import build_autoencoder
    from strsr.presets import get_preset

    vae = build_autoencoder(get_preset(preset_name), device="meta", dtype=torch.bfloat16)
    return _module_bytes(vae, BF16), _leaf_bytes(vae, lambda m: _module_bytes(m, BF16))


def adapter_bytes(preset_name: str) -> int:
    import torch

    from strsr.model.adapter import adapter_for
    from strsr.presets import get_preset

    with torch.device("meta"):
        return _module_bytes(adapter_for(get_preset(preset_name)), FP32)


def vlm_bytes() -> tuple[int, int]:
    """(bytes, largest leaf bytes) of Qwen3-VL-4B-Instruct's backbone (no LM head: its embedding is tied) in bf16."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLModel

    with torch.device("meta"):
        model = Qwen3VLModel(Qwen3VLConfig(**QWEN3_VL_4B_CONFIG))
    return _module_bytes(model, BF16), _leaf_bytes(model, lambda m: _module_bytes(m, BF16))


def components(preset_name: str, weights: str) -> Components:
    dit, dit_leaf = transformer_bytes(preset_name, weights)
    vae, vae_leaf = vae_bytes(preset_name)
    vlm, vlm_leaf = (0, 0) if _tiny(preset_name) else vlm_bytes()
    adapter = 0 if _tiny(preset_name) else adapter_bytes(preset_name)
    return Components(dit, vae, adapter, vlm, {"transformer": dit_leaf, "vae": vae_leaf, "vlm": vlm_leaf})


def _tiny(preset_name: str) -> bool:
    from strsr.presets import get_preset

    return get_preset(preset_name).tiny


def activation_bytes(preset_name: str, tile: int = 1024, weights: str = "bf16") -> dict[str, int]:
    """Per-tile activation peaks (bytes) of each stage, batch 1, bf16 activations.

    dit:  T tokens (the tile's latent tokens plus the conditioning's: 512 VLM tokens at most, 1 for the tiny null
          embedding), width D, MLP width M. FLUX.2's single-stream block holds at its peak the input (T*D), the fused
          QKV+MLP projection (T*(3D+2M)), q/k/v after norm and RoPE (3*T*D), the attention output (T*D) and the MLP
          activation (T*M): T*(8D+3M) values. Z-Image's block: input, q/k/v, attention output, w1/w3 outputs and their
          product: T*(5D+3F). fp8 adds the quantised copy of the widest layer input (T*max(D, M) bytes).
    vae:  the decoder's last up block at full resolution dominates: its 256-channel input (bf16), its GroupNorm output
          (fp32), and three 128-channel maps (conv, norm, conv): H*W*(256*2 + 256*4 + 3*128*4) bytes; the encoder's
          first stage is smaller. The tiny pixel-shuffle VAE: its input and output only.
    vlm:  the LR of one tile (tile/4 px a side) through Qwen3-VL-4B: (side/16)^2 patches, a quarter of them as tokens
          beside the prompt; per layer about 8 hidden-wide and 3 MLP-wide values a token.
    """
    from strsr.presets import get_preset

    preset = get_preset(preset_name)
    config = preset.transformer_config
    latent = tile // preset.latents.pixel_multiple
    text = 1 if preset.tiny else 512
    tokens = latent * latent + text
    if preset.family == "flux2":
        width = config["num_attention_heads"] * config["attention_head_dim"]
        mlp = int(width * config["mlp_ratio"])
        dit = tokens * (8 * width + 3 * mlp) * BF16
    else:
        width = config["dim"]
        mlp = int(width / 3 * 8)
        dit = tokens * (5 * width + 3 * mlp) * BF16
    if weights == "fp8":
        dit += tokens * max(width, mlp)
    pixels = tile * tile
    if preset.latents.autoencoder == "pixel-shuffle":
        vae = pixels * 3 * FP32 * 2
    else:
        vae = pixels * (256 * BF16 + 256 * FP32 + 3 * 128 * FP32)
    vlm = 0
    if not preset.tiny:
        text_cfg, vision = QWEN3_VL_4B_CONFIG["text_config"], QWEN3_VL_4B_CONFIG["vision_config"]
        patches = math.ceil(tile / 4 / vision["patch_size"]) ** 2
        seq = patches // 4 + VLM_PROMPT_TOKENS
        vlm = max(seq * (8 * text_cfg["hidden_size"] + 3 * text_cfg["intermediate_size"]),
                  patches * (8 * vision["hidden_size"] + 3 * vision["intermediate_size"])) * BF16  # fmt: skip
    return {"dit": dit, "vae": vae, "vlm": vlm}


@dataclass(frozen=True)
class Estimate:
    preset: str
    weights: str
    offload: str
    tile: int
    transformer_gb: float
    vae_gb: float
    adapter_gb: float
    vlm_gb: float
    activations_gb: float
    peak_gb: float


def estimate(preset_name: str, weights: str, offload: str, tile: int = 1024,
             parts: Components | None = None) -> Estimate:  # fmt: skip
    """The expected peak (GB) of one preset/precision/offload mode at `tile`-px tiles; see the module docstring."""
    parts = parts or components(preset_name, weights)
    act = activation_bytes(preset_name, tile, weights)
    tile_act = max(act["dit"], act["vae"])
    if offload == "none":
        peak = parts.transformer + parts.vae + parts.adapter + parts.vlm + max(tile_act, act["vlm"])
    elif offload == "model":
        vlm_stage = parts.vlm + parts.adapter + act["vlm"]
        tile_stage = parts.transformer + parts.vae + parts.adapter + tile_act
        peak = max(vlm_stage, tile_stage)
    elif offload == "sequential":
        leaf = parts.largest_leaf
        peak = parts.adapter + max(leaf["vlm"] + act["vlm"], leaf["transformer"] + act["dit"], leaf["vae"] + act["vae"])
    else:
        raise ValueError(f"unknown offload mode {offload!r}; choose from {', '.join(MODES)}")
    peak += CUDA_CONTEXT_BYTES
    used_act = act["vlm"] if offload != "none" and parts.vlm and act["vlm"] > tile_act else tile_act
    return Estimate(preset_name, weights, offload, tile, parts.transformer / GB, parts.vae / GB, parts.adapter / GB,
                    parts.vlm / GB, used_act / GB, peak / GB)  # fmt: skip


def table(tile: int = 1024) -> list[Estimate]:
    rows = []
    for preset in PRESETS:
        for weights in WEIGHTS:
            parts = components(preset, weights)
            rows.extend(estimate(preset, weights, mode, tile, parts) for mode in MODES)
    return rows


def markdown(rows: list[Estimate]) -> str:
    lines = ["| preset | weights | --offload | DiT | VAE | adapter | VLM | activations | peak (estimated) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        sizes = [_gb(v) for v in (r.transformer_gb, r.vae_gb, r.adapter_gb, r.vlm_gb, r.activations_gb)]
        lines.append(f"| {r.preset} | {r.weights} | {r.offload} | {' | '.join(sizes)} | ~{r.peak_gb:.1f} GB |")
    return "\n".join(lines)


def _gb(value: float) -> str:
    return "-" if value == 0 else f"{value:.2f}" if value >= 0.01 else "<0.01"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m strsr.bench.gpu_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=1024, help="output tile size in pixels")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    rows = table(args.tile)
    sys.stdout.write(f"Estimated GPU memory at {args.tile}-px tiles (GB = 1e9 bytes; weights counted on the meta "
                     "device, activations estimated, 0.5 GB CUDA context; nothing measured)\n\n"
                     + markdown(rows) + "\n")  # fmt: skip
    if args.json is not None:
        from strsr.io.atomic import write_json

        write_json(args.json, [asdict(r) for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
