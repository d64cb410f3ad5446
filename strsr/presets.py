"""Named model presets: which diffusers classes, configs and latent conventions each StrSR backbone uses.

A preset is pure data; `strsr.model.backbones` turns it into modules. The full presets reproduce the architectures that
the official StrSR checkpoints were trained on (FLUX.2-klein-base-4B and Z-Image-Turbo), so a LoRA or a
checkpoint saved for one preset only loads into the same preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

Family = Literal["flux2", "zimage"]
AutoencoderKind = Literal["flux2-kl", "kl", "pixel-shuffle"]

# Linear-layer name suffixes that receive LoRA (the official StrSR training targets). In FLUX.2's double-stream
# blocks `attn.to_out` is a ModuleList, so only its `to_out.0` Linear matches there; in single-stream blocks
# `attn.to_out` is itself a Linear.
# Text hidden size of Qwen3-VL-4B-Instruct, the VLM of the paper's dual encoder: the adapter's input width.
QWEN3_VL_4B_WIDTH = 2560

FLUX2_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "to_out",
    "to_qkv_mlp_proj",
)  # fmt: skip
ZIMAGE_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


@dataclass(frozen=True)
class LatentSpec:
    """How pixels become the tensor the one-step Euler update acts on.

    flux2:  VAE mode -> 2x2 patchify (C -> 4C) -> (z - bn.running_mean) / sqrt(bn.running_var + eps), the VAE's
            BatchNorm statistics (identity for an autoencoder without `bn`).
    zimage: raw VAE mode on encode; `z / scaling_factor + shift_factor` before decode. The asymmetry is the official
            StrSR convention for Z-Image and its checkpoints depend on it.
    """

    autoencoder: AutoencoderKind
    vae_scale: int  # pixels per latent pixel
    channels: int  # VAE latent channels
    scaling_factor: float = 1.0  # zimage decode only
    shift_factor: float = 0.0  # zimage decode only

    @property
    def pixel_multiple(self) -> int:
        """Image sides must be multiples of this: VAE downsampling times the 2x2 token patch of both families."""
        return self.vae_scale * 2


@dataclass(frozen=True)
class Preset:
    name: str
    family: Family
    transformer_config: MappingProxyType  # kwargs of the diffusers transformer class
    latents: LatentSpec
    vae_config: MappingProxyType  # autoencoder config for random-weight builds (pretrained folders bring their own)
    condition_width: int  # width of the DiT's text/caption embedding input
    lora_targets: tuple[str, ...]
    lora_rank: int = 256
    lora_alpha: int = 256
    # The one-step start time t1 = 0.8 as the official scripts give it, as integers on the 0-1000 scale: the
    # timestep the DiT sees (`model_t`) and the Euler step's length (`coeff_t`). Timesteps are built from them in
    # float32 whatever the model dtype (bf16(0.8) would shift Z-Image's 1 - t1 from 200 to 199).
    model_t: int = 800
    coeff_t: int = 800
    num_null_tokens: int = 1  # length of the learned null conditioning sequence
    text_encoder_layers: tuple[int, ...] = ()  # flux2: hidden-state layers concatenated into the condition
    text_max_length: int = 512
    tiny: bool = False  # toy preset: always random (or checkpoint) weights, never a pretrained folder
    default_tile: int = 1024  # output tile of strsr-upscale (the official scripts' 1024 px)
    bundled_weights: str | None = None  # file in strsr/data/weights/ used when no weights are given
    description: str = ""

    @property
    def t1(self) -> float:
        """The one-step start time on the paper's axis (1 = noise)."""
        return self.coeff_t / 1000

    @property
    def transformer_class_name(self) -> str:
        return "Flux2Transformer2DModel" if self.family == "flux2" else "ZImageTransformer2DModel"


def _frozen(mapping: dict[str, Any]) -> MappingProxyType:
    return MappingProxyType(dict(mapping))


FLUX2_KLEIN_4B = Preset(
    name="flux2-klein-4b",
    family="flux2",
    transformer_config=_frozen(
        dict(
            patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256, mlp_ratio=3.0,
            axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, eps=1e-6, guidance_embeds=False,
        )
    ),  # fmt: skip
    latents=LatentSpec(autoencoder="flux2-kl", vae_scale=8, channels=32),
    vae_config=_frozen({}),  # AutoencoderKLFlux2's defaults are the released FLUX.2 VAE
    condition_width=7680,
    lora_targets=FLUX2_LORA_TARGETS,
    text_encoder_layers=(9, 18, 27),
    description="FLUX.2 [klein] base 4B (3.88 B-parameter DiT), AutoencoderKLFlux2",
)

ZIMAGE_TURBO = Preset(
    name="zimage-turbo",
    family="zimage",
    transformer_config=_frozen(
        dict(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=3840, n_layers=30, n_refiner_layers=2,
            n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True, cap_feat_dim=2560, rope_theta=256.0,
            t_scale=1000.0, axes_dims=(32, 48, 48), axes_lens=(1536, 512, 512),
        )
    ),  # fmt: skip
    latents=LatentSpec(autoencoder="kl", vae_scale=8, channels=16, scaling_factor=0.3611, shift_factor=0.1159),
    vae_config=_frozen(
        dict(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=16, layers_per_block=2, norm_num_groups=32,
            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
        )
    ),  # the FLUX.1 VAE that Z-Image uses
    condition_width=2560,
    lora_targets=ZIMAGE_LORA_TARGETS,
    description="Z-Image-Turbo 6B (6.15 B-parameter DiT), FLUX.1-style AutoencoderKL",
)

# Tiny presets: the same transformer classes at toy width, and a lossless pixel-(un)shuffle autoencoder (4x down,
# 48 channels) so a model small enough to train on a CPU can still learn real super-resolution.
_TINY_LATENTS = LatentSpec(autoencoder="pixel-shuffle", vae_scale=4, channels=48)

TINY = Preset(
    name="tiny",
    family="flux2",
    transformer_config=_frozen(
        dict(
            patch_size=1, in_channels=4 * 48, num_layers=1, num_single_layers=2, attention_head_dim=32,
            num_attention_heads=4, joint_attention_dim=64, timestep_guidance_channels=64, mlp_ratio=3.0,
            axes_dims_rope=(8, 8, 8, 8), rope_theta=2000, eps=1e-6, guidance_embeds=False,
        )
    ),  # fmt: skip
    latents=_TINY_LATENTS,
    vae_config=_frozen(dict(scale=4)),
    condition_width=64,
    tiny=True,
    default_tile=256,  # attention is quadratic in a tile's tokens: bench/tiny_tile.py, same PSNR as 512/1024 tiles
    bundled_weights="strsr-tiny.safetensors",
    lora_targets=FLUX2_LORA_TARGETS,
    lora_rank=16,
    lora_alpha=16,
    text_encoder_layers=(1, 2),
    description="toy FLUX.2-class DiT on a pixel-shuffle autoencoder, for CPU runs and tests",
)

TINY_ZIMAGE = Preset(
    name="tiny-zimage",
    family="zimage",
    transformer_config=_frozen(
        dict(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=48, dim=128, n_layers=2, n_refiner_layers=1,
            n_heads=4, n_kv_heads=4, norm_eps=1e-5, qk_norm=True, cap_feat_dim=64, rope_theta=256.0,
            t_scale=1000.0, axes_dims=(8, 12, 12), axes_lens=(1536, 512, 512),
        )
    ),  # fmt: skip
    latents=_TINY_LATENTS,
    vae_config=_frozen(dict(scale=4)),
    condition_width=64,
    tiny=True,
    lora_targets=ZIMAGE_LORA_TARGETS,
    lora_rank=16,
    lora_alpha=16,
    description="toy Z-Image-class DiT on a pixel-shuffle autoencoder, for CPU runs and tests",
)

PRESETS: MappingProxyType = MappingProxyType({p.name: p for p in (TINY, TINY_ZIMAGE, FLUX2_KLEIN_4B, ZIMAGE_TURBO)})


def get_preset(name: str) -> Preset:
    """The preset called `name`; a clear error listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
