"""Full presets build on the meta device with exactly the published architectures."""

import pytest
import torch
from diffusers import Flux2Transformer2DModel, ZImageTransformer2DModel

from strsr.model.backbones import build_transformer
from strsr.model.lora import resolve_lora_targets
from strsr.presets import PRESETS, get_preset


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_flux2_klein_4b_architecture():
    model = build_transformer(get_preset("flux2-klein-4b"), device="meta")
    assert isinstance(model, Flux2Transformer2DModel)
    assert all(p.device.type == "meta" for p in model.parameters())
    # FLUX.2 [klein] base 4B: 3,875,544,576 parameters (3.876 B).
    assert _count(model) == pytest.approx(3.876e9, rel=1e-3)
    cfg = model.config
    assert (cfg.num_layers, cfg.num_single_layers, cfg.num_attention_heads, cfg.attention_head_dim) == (5, 20, 24, 128)
    assert (cfg.in_channels, cfg.joint_attention_dim, cfg.mlp_ratio, cfg.rope_theta) == (128, 7680, 3.0, 2000)
    assert tuple(cfg.axes_dims_rope) == (32, 32, 32, 32) and cfg.guidance_embeds is False


def test_zimage_turbo_architecture():
    model = build_transformer(get_preset("zimage-turbo"), device="meta")
    assert isinstance(model, ZImageTransformer2DModel)
    assert _count(model) == pytest.approx(6.15e9, rel=2e-3)
    assert (len(model.layers), len(model.noise_refiner), len(model.context_refiner)) == (30, 2, 2)
    assert (model.dim, model.n_heads, model.in_channels) == (3840, 30, 16)


def test_lora_targets_per_family():
    flux = build_transformer(get_preset("flux2-klein-4b"), device="meta")
    names = resolve_lora_targets(flux, get_preset("flux2-klein-4b").lora_targets)
    # per double block: q k v out.0 add_q add_k add_v add_out (8); per single block: qkv_mlp, out (2)
    assert len(names) == 5 * 8 + 20 * 2
    assert "transformer_blocks.0.attn.to_out.0" in names and "single_transformer_blocks.3.attn.to_out" in names
    assert not any(n.endswith("ff.linear_in") or n == "proj_out" for n in names)
    zimage = build_transformer(get_preset("zimage-turbo"), device="meta")
    znames = resolve_lora_targets(zimage, get_preset("zimage-turbo").lora_targets)
    assert len(znames) == (30 + 2 + 2) * 4 + (30 + 2 + 2) * 3  # attention q k v out.0 and SwiGLU w1 w2 w3
    assert not any("adaLN" in n for n in znames)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'flux3'.*tiny"):
        get_preset("flux3")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_consistent(name):
    preset = PRESETS[name]
    model = build_transformer(preset, device="meta")
    width = model.config.joint_attention_dim if preset.family == "flux2" else model.config.cap_feat_dim
    assert width == preset.condition_width
    channels = model.config.in_channels
    expected = preset.latents.channels * (4 if preset.family == "flux2" else 1)
    assert channels == expected
    assert preset.t1 == 0.8 and preset.latents.pixel_multiple == 2 * preset.latents.vae_scale
    assert torch.tensor(0).device.type == "cpu"  # building on meta left the default device alone


def test_full_preset_autoencoders_for_random_weights():
    from diffusers import AutoencoderKL, AutoencoderKLFlux2

    from strsr.model.backbones import build_autoencoder

    flux_vae = build_autoencoder(get_preset("flux2-klein-4b"), device="meta")
    assert isinstance(flux_vae, AutoencoderKLFlux2)
    assert flux_vae.config.latent_channels == 32 and flux_vae.bn.num_features == 128  # BN over 2x2 patches
    zimage_vae = build_autoencoder(get_preset("zimage-turbo"), device="meta")
    assert isinstance(zimage_vae, AutoencoderKL)
    assert (zimage_vae.config.latent_channels, zimage_vae.config.scaling_factor, zimage_vae.config.shift_factor) == (
        16, 0.3611, 0.1159,
    )  # fmt: skip
    assert zimage_vae.quant_conv is None and len(zimage_vae.config.block_out_channels) == 4  # 8x down
