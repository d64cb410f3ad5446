"""Forward FLOPs of a one-step StrSR call: the DiT analytically from its config, the VAE from its module shapes.

Convention, the same as `torch.utils.flop_counter`: FLOPs = 2 x the multiply-adds of matmuls and convolutions, for
one image (batch 1). Elementwise work (LayerNorm/RMSNorm/GroupNorm, RoPE, softmax, activations, gates, bias adds)
is excluded, as flop_counter excludes it; it is well under 1% of a DiT call at 1024^2.

DiT counts follow diffusers 0.42's `Flux2Transformer2DModel` and `ZImageTransformer2DModel` as
`strsr.backbones.predict_velocity` calls them: no guidance embedding, no LoRA (a merged or absent adapter; an
unmerged rank-r adapter adds 2r(in+out) per token per targeted linear), batch 1 so no attention padding mask.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.models.attention_processor import Attention
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from strsr.model.autoencoders import decode_image, encode_latent
from strsr.presets import Preset

# Z-Image pads the image and the caption sequence each to a multiple of this, with copies of a learned pad token
# that are attended to like real tokens at batch 1 (diffusers' `transformer_z_image.SEQ_MULTI_OF`).
ZIMAGE_SEQ_MULTIPLE = 32
ZIMAGE_ADALN_WIDTH = 256  # `ADALN_EMBED_DIM`: the timestep embedding width, capped at dim
ZIMAGE_TIME_FREQ, ZIMAGE_TIME_MID = 256, 1024  # `TimestepEmbedder(frequency_embedding_size, mid_size)`

PARTS = ("embed", "linear", "attention", "modulation", "total")


def image_tokens(preset: Preset, height: int, width: int) -> int:
    """DiT image tokens for an output of height x width pixels: one per 2x2 latent patch (16 px for both full
    presets, 8 px for the tiny ones)."""
    side = preset.latents.pixel_multiple
    if height % side or width % side:
        raise ValueError(f"image sides ({height}, {width}) must be multiples of {side}")
    return (height // side) * (width // side)


def dit_flops(transformer_config: dict, family: str, image_tokens: int, text_tokens: int) -> dict[str, int]:
    """Forward FLOPs of one DiT call on `image_tokens` image and `text_tokens` conditioning tokens (before any
    padding; Z-Image's padding is counted as computed).

    Parts: `embed` (per-token input/output projections), `linear` (per-token block projections and MLPs),
    `attention` (QK^T and PV over the joint sequence), `modulation` (per-sample timestep and adaLN linears), `total`.
    """
    if image_tokens < 1 or text_tokens < 0:
        raise ValueError(f"need image_tokens >= 1 and text_tokens >= 0, got {image_tokens}, {text_tokens}")
    if family == "flux2":
        parts = _flux2_flops(transformer_config, image_tokens, text_tokens)
    elif family == "zimage":
        parts = _zimage_flops(transformer_config, image_tokens, text_tokens)
    else:
        raise ValueError(f"unknown family {family!r}; expected 'flux2' or 'zimage'")
    parts["total"] = sum(parts.values())
    return parts


def _flux2_flops(cfg: dict, num_img: int, num_txt: int) -> dict[str, int]:
    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    mlp = int(dim * cfg.get("mlp_ratio", 3.0))
    in_ch = cfg.get("in_channels", 128)
    out_ch = (cfg.get("out_channels") or in_ch) * cfg.get("patch_size", 1) ** 2
    seq = num_img + num_txt  # attention is joint over text + image in both block kinds
    # Double-stream: per stream Q, K, V, out (4 D^2) and SwiGLU in (D -> 2F) and out (F -> D); text and image streams
    # have equal widths, so all `seq` tokens cost the same.
    double = 4 * dim * dim + 2 * dim * mlp + mlp * dim
    # Single-stream: one fused D -> 3D + 2F projection (QKV and the SwiGLU input), one fused D + F -> D output.
    single = dim * (3 * dim + 2 * mlp) + (dim + mlp) * dim
    num_double, num_single = cfg.get("num_layers", 8), cfg.get("num_single_layers", 48)
    # Per sample: timestep MLP (C -> D -> D), the shared modulations (6D, 6D, 3D outputs), norm_out's D -> 2D.
    modulation = cfg.get("timestep_guidance_channels", 256) * dim + dim * dim + dim * (6 + 6 + 3) * dim + dim * 2 * dim
    embed = num_img * in_ch * dim + num_txt * cfg.get("joint_attention_dim", 15360) * dim + num_img * dim * out_ch
    return {
        "embed": 2 * embed,
        "linear": 2 * seq * (num_double * double + num_single * single),
        "attention": 4 * seq * seq * dim * (num_double + num_single),
        "modulation": 2 * modulation,
    }


def _zimage_flops(cfg: dict, num_img: int, num_txt: int) -> dict[str, int]:
    dim, heads = cfg.get("dim", 3840), cfg.get("n_heads", 30)
    inner = heads * (dim // heads)  # Q/K/V width: diffusers' Attention is built with dim_head = dim // heads
    ffn = int(dim / 3 * 8)  # SwiGLU hidden width, three linears w1, w3 (D -> H) and w2 (H -> D)
    patch = cfg.get("all_f_patch_size", (1,))[0] * cfg.get("all_patch_size", (2,))[0] ** 2 * cfg.get("in_channels", 16)
    adaln = min(dim, ZIMAGE_ADALN_WIDTH)
    refiners, layers = cfg.get("n_refiner_layers", 2), cfg.get("n_layers", 30)
    # Each sequence is padded before embedding, and the padded tokens go through every block.
    num_img = _round_up(num_img, ZIMAGE_SEQ_MULTIPLE)
    num_txt = _round_up(num_txt, ZIMAGE_SEQ_MULTIPLE)
    seq = num_img + num_txt
    block = 4 * dim * inner + 3 * dim * ffn
    # noise_refiner runs on image tokens, context_refiner on caption tokens, the main layers on both; the final
    # layer projects every unified token, caption ones included, before unpatchify drops them.
    token_linears = refiners * (num_img + num_txt) * block + layers * seq * block
    attended = refiners * (num_img**2 + num_txt**2) + layers * seq**2
    # Per sample: timestep MLP, a D -> 4D adaLN linear per modulated block (noise refiners and main layers), and the
    # final layer's adaLN -> D scale.
    modulation = ZIMAGE_TIME_FREQ * ZIMAGE_TIME_MID + ZIMAGE_TIME_MID * adaln + (refiners + layers) * adaln * 4 * dim
    modulation += adaln * dim
    return {
        "embed": 2 * (num_img * patch * dim + num_txt * cfg.get("cap_feat_dim", 2560) * dim + seq * dim * patch),
        "linear": 2 * token_linears,
        "attention": 4 * inner * attended,
        "modulation": 2 * modulation,
    }


def _round_up(n: int, multiple: int) -> int:
    return n + (-n) % multiple


def vae_flops(vae: nn.Module, height: int, width: int, part: str = "encode") -> int:
    """Convolution, linear and attention-matmul FLOPs of the VAE's encoder (image -> latent mode) or decoder
    (latent -> image) for one height x width RGB image, without tiling.

    Counted from the output shapes that forward hooks see on a meta-device run (no weights, no compute); a VAE with
    real weights is replicated from its config on the meta device first.
    """
    if part not in ("encode", "decode"):
        raise ValueError(f"part must be 'encode' or 'decode', got {part!r}")
    if any(p.device.type != "meta" for p in vae.parameters()):
        with torch.device("meta"):
            vae = type(vae).from_config(vae.config)
    image = torch.zeros(1, 3, height, width, device="meta")
    counts: list[int] = []
    hooks = [m.register_forward_hook(_count_hook(m, counts)) for m in vae.modules() if _counted(m)]
    try:
        with torch.no_grad():
            if part == "encode":
                encode_latent(vae, image)
            else:
                latent = encode_latent(vae, image).shape
                counts.clear()  # only the decoder's work
                decode_image(vae, torch.zeros(latent, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(counts)


def _counted(module: nn.Module) -> bool:
    conv = isinstance(module, nn.modules.conv._ConvNd) and not module.transposed
    return conv or isinstance(module, (nn.Linear, Attention))


def _count_hook(module: nn.Module, counts: list[int]):
    if isinstance(module, nn.Linear):
        per_output = module.in_features
    elif isinstance(module, Attention):
        per_output = None
    else:
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        per_output = module.in_channels // module.groups * kernel

    def hook(_module, _inputs, output):
        if per_output is not None:
            counts.append(2 * output.numel() * per_output)
        else:
            # QK^T and PV over the spatial tokens; the Q/K/V/out projections are Linear children, counted there.
            # The output keeps the input's layout: (B, C, H, W) or (B, S, C).
            batch = output.shape[0]
            tokens = output[0, 0].numel() if output.ndim == 4 else output.shape[1]
            counts.append(4 * batch * tokens * tokens * module.inner_dim)

    return hook


def flop_counter_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs that `torch.utils.flop_counter` counts while `fn()` runs.

    Attention is forced onto the math SDPA backend: torch's fused CPU SDPA kernel has no FLOP formula and would
    count as zero. On meta tensors nothing is computed, so full-width models can be counted without memory.
    """
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()
