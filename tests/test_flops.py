"""Analytic DiT and shape-based VAE FLOP counts against torch.utils.flop_counter on what strsr actually runs.

Full-width models are counted on the meta device (flop_counter needs shapes only); their depth is reduced and the
measured count extrapolated by per-block costs measured by differencing two depths.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from strsr.bench.flops import dit_flops, flop_counter_flops, image_tokens, vae_flops
from strsr.model.autoencoders import decode_image, encode_latent
from strsr.model.backbones import Condition, build_autoencoder, build_transformer, predict_velocity
from strsr.presets import get_preset

# (preset, text tokens): FLUX.2 feeds its padded 512-token prompt unmasked; Z-Image drops masked tokens and pads
# the rest to a multiple of 32, so 200 real tokens run as 224.
FULL_CASES = [("flux2-klein-4b", 512), ("zimage-turbo", 200)]


def _with_depth(preset, **depth):
    return dataclasses.replace(preset, transformer_config=dict(preset.transformer_config, **depth))


def _measured(preset, height: int, width: int, text_tokens: int, device: str = "meta") -> int:
    """flop_counter's count of one `predict_velocity` call (the DiT call of `StrSRGenerator.one_step`)."""
    transformer = build_transformer(preset, device=device, seed=0).eval()
    patch = 2 if preset.family == "flux2" else 1  # FLUX.2's state is the 2x2-patchified latent
    side = preset.latents.vae_scale * patch
    state = torch.randn(1, preset.latents.channels * patch**2, height // side, width // side).to(device)
    condition = Condition(torch.randn(1, text_tokens, preset.condition_width).to(device))
    with torch.no_grad():
        return flop_counter_flops(lambda: predict_velocity(preset, transformer, state, preset.model_t, condition))


def _analytic(preset, height: int, width: int, text_tokens: int) -> dict[str, int]:
    tokens = image_tokens(preset, height, width)
    return dit_flops(dict(preset.transformer_config), preset.family, tokens, text_tokens)


@pytest.mark.parametrize("name,text_tokens", FULL_CASES)
def test_full_preset_dit_flops_match_flop_counter(name, text_tokens):
    preset = get_preset(name)
    cfg = preset.transformer_config
    if preset.family == "flux2":
        keys = ("num_layers", "num_single_layers")
    else:
        keys = ("n_layers",)  # the refiners stay at full depth and are measured, not extrapolated
    base = {key: 1 for key in keys}
    reduced = _measured(_with_depth(preset, **base), 1024, 1024, text_tokens)
    # Same width, one block deeper per kind: the difference is that kind's per-block cost.
    extrapolated = reduced
    for key in keys:
        per_block = _measured(_with_depth(preset, **{**base, key: 2}), 1024, 1024, text_tokens) - reduced
        assert per_block > 0
        extrapolated += (cfg[key] - 1) * per_block

    # The analytic count of the reduced model itself, and of the full model against the extrapolation.
    reduced_analytic = _analytic(_with_depth(preset, **base), 1024, 1024, text_tokens)["total"]
    assert reduced_analytic == pytest.approx(reduced, rel=0.02)
    full = _analytic(preset, 1024, 1024, text_tokens)
    assert full["total"] == pytest.approx(extrapolated, rel=0.02)
    assert full["total"] == sum(v for k, v in full.items() if k != "total")
    assert full["linear"] > full["attention"] > full["embed"] > full["modulation"] > 0


def test_flux2_klein_one_step_is_about_31_tflop():
    preset = get_preset("flux2-klein-4b")
    # strsr's default conditioning: the one learned null token. 4096 image tokens at 1024^2.
    assert image_tokens(preset, 1024, 1024) == 4096
    null = _analytic(preset, 1024, 1024, preset.num_null_tokens)["total"]
    assert null == pytest.approx(31e12, rel=0.05)
    # A full 512-token prompt is attended too: more work, still the same order.
    assert null < _analytic(preset, 1024, 1024, 512)["total"] < 1.15 * null


@pytest.mark.parametrize("preset_fixture", ["flux2_kl_preset", "zimage_kl_preset"])
def test_tiny_dit_flops_match_a_real_forward(preset_fixture, request):
    preset = request.getfixturevalue(preset_fixture)
    # 5 text tokens: Z-Image pads them to 32 and the padding is computed; 32x48 px: a non-square token grid.
    measured = _measured(preset, 32, 48, 5, device="cpu")
    assert _analytic(preset, 32, 48, 5)["total"] == pytest.approx(measured, rel=1e-6)


def test_zimage_padding_is_counted():
    cfg = dict(get_preset("zimage-turbo").transformer_config)
    assert dit_flops(cfg, "zimage", 4096, 1) == dit_flops(cfg, "zimage", 4096, 32)
    assert dit_flops(cfg, "zimage", 4096, 33)["total"] > dit_flops(cfg, "zimage", 4096, 32)["total"]


@pytest.mark.parametrize("vae_fixture", ["tiny_flux2_vae", "tiny_kl_vae"])
def test_vae_flops_match_a_real_forward(vae_fixture, request):
    vae = request.getfixturevalue(vae_fixture)
    image = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        latent = encode_latent(vae, image)
        encode = flop_counter_flops(lambda: encode_latent(vae, image))
        decode = flop_counter_flops(lambda: decode_image(vae, latent))
    assert vae_flops(vae, 32, 48, "encode") == pytest.approx(encode, rel=0.01)
    assert vae_flops(vae, 32, 48, "decode") == pytest.approx(decode, rel=0.01)


@pytest.mark.parametrize("name", ["flux2-klein-4b", "zimage-turbo", "tiny"])
def test_preset_vae_flops_on_meta(name):
    preset = get_preset(name)
    vae = build_autoencoder(preset, device="meta")
    image = torch.zeros(1, 3, 1024, 1024, device="meta")
    side = preset.latents.vae_scale
    latent = torch.zeros(1, preset.latents.channels, 1024 // side, 1024 // side, device="meta")
    with torch.no_grad():
        encode = flop_counter_flops(lambda: encode_latent(vae, image))
        decode = flop_counter_flops(lambda: decode_image(vae, latent))
    assert vae_flops(vae, 1024, 1024, "encode") == pytest.approx(encode, rel=0.01)
    assert vae_flops(vae, 1024, 1024, "decode") == pytest.approx(decode, rel=0.01)
    if preset.tiny:
        assert encode == decode == 0  # the pixel-shuffle autoencoder has no arithmetic
    else:
        assert 1e12 < encode < decode < 20e12


def test_bad_arguments():
    cfg = dict(get_preset("tiny").transformer_config)
    with pytest.raises(ValueError, match="family"):
        dit_flops(cfg, "sd3", 16, 1)
    with pytest.raises(ValueError, match="image_tokens"):
        dit_flops(cfg, "flux2", 0, 1)
    with pytest.raises(ValueError, match="part"):
        vae_flops(build_autoencoder(get_preset("tiny")), 32, 32, "both")
    with pytest.raises(ValueError, match="multiples"):
        image_tokens(get_preset("flux2-klein-4b"), 1000, 1024)
