"""Latent conventions against diffusers' own FLUX.2 pipeline helpers and hand formulas."""

import pytest
import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline as Klein

from strsr.model.autoencoders import PixelShuffleAutoencoder
from strsr.model.latents import (
    LatentCodec,
    flux2_image_ids,
    flux2_text_ids,
    pack_tokens,
    patchify_2x2,
    unpack_tokens,
    unpatchify_2x2,
)
from strsr.presets import TINY, TINY_ZIMAGE


@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (2, 32, 6, 10), (1, 3, 14, 22)])
def test_patchify_matches_diffusers_and_round_trips(shape):
    latent = torch.randn(shape)
    state = patchify_2x2(latent)
    assert torch.equal(state, Klein._patchify_latents(latent))
    assert torch.equal(unpatchify_2x2(state), latent)
    assert torch.equal(unpatchify_2x2(state), Klein._unpatchify_latents(state))


def test_token_packing_and_ids_match_diffusers():
    state = torch.randn(2, 16, 3, 5)
    tokens = pack_tokens(state)
    assert torch.equal(tokens, Klein._pack_latents(state))
    assert torch.equal(unpack_tokens(tokens, 3, 5), state)
    ids = flux2_image_ids(3, 5)
    assert torch.equal(ids, Klein._prepare_latent_ids(state)[0])
    unpacked = Klein._unpack_latents_with_ids(tokens, ids[None].expand(2, -1, -1), 3, 5)
    assert torch.equal(unpacked, state)
    assert torch.equal(flux2_text_ids(7), Klein._prepare_text_ids(torch.zeros(1, 7, 2))[0])


def test_flux2_batchnorm_normalisation_round_trips_exactly(tiny_flux2_vae):
    codec = LatentCodec("flux2", TINY.latents, tiny_flux2_vae, latent="mode")
    image = torch.rand(1, 3, 16, 24) * 2 - 1
    latent = tiny_flux2_vae.encode(image).latent_dist.mode()
    bn = tiny_flux2_vae.bn
    expected = (Klein._patchify_latents(latent) - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + tiny_flux2_vae.config.batch_norm_eps
    )
    with torch.no_grad():
        state = codec.encode(image)
    torch.testing.assert_close(state, expected, rtol=1e-6, atol=1e-6)
    # decode undoes the normalisation exactly: compare the latent handed to the VAE decoder
    denorm = unpatchify_2x2(state * codec.bn_std + codec.bn_mean)
    torch.testing.assert_close(denorm, latent, rtol=1e-5, atol=1e-5)


def test_pixel_shuffle_codec_is_lossless():
    vae = PixelShuffleAutoencoder(scale=4)
    for preset in (TINY, TINY_ZIMAGE):
        codec = LatentCodec(preset.family, preset.latents, vae)
        image = torch.rand(2, 3, 24, 40) * 2 - 1
        state = codec.encode(image)
        expected_channels = 48 * 4 if preset.family == "flux2" else 48
        assert state.shape == (
            2,
            expected_channels,
            24 // (8 if preset.family == "flux2" else 4),
            40 // (8 if preset.family == "flux2" else 4),
        )
        assert torch.equal(codec.decode(state), image)


def test_zimage_encode_is_raw_and_decode_rescales(tiny_kl_vae):
    spec = TINY_ZIMAGE.latents.__class__(
        autoencoder="kl", vae_scale=2, channels=4, scaling_factor=0.3611, shift_factor=0.1159
    )
    codec = LatentCodec("zimage", spec, tiny_kl_vae, latent="mode")
    image = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        state = codec.encode(image)
        raw = tiny_kl_vae.encode(image).latent_dist.mode()
        assert torch.equal(state, raw)  # no shift, no scale on encode
        decoded = codec.decode(state)
        expected = tiny_kl_vae.decode(raw / 0.3611 + 0.1159).sample
    torch.testing.assert_close(decoded, expected, rtol=0, atol=0)


def test_sample_is_mean_plus_std_times_the_generators_noise(tiny_kl_vae):
    spec = TINY_ZIMAGE.latents.__class__(autoencoder="kl", vae_scale=2, channels=4)
    codec = LatentCodec("zimage", spec, tiny_kl_vae)  # the default: sample, as the official scripts encode
    assert codec.samples and codec.latent_shape((2, 3, 8, 12)) == (2, 4, 4, 6)
    image = torch.rand(2, 3, 8, 12) * 2 - 1
    with torch.no_grad():
        posterior = tiny_kl_vae.encode(image).latent_dist
        noise = torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(5))
        want = posterior.mean + torch.exp(0.5 * posterior.logvar.clamp(-30, 20)) * noise
        torch.testing.assert_close(codec.encode(image, torch.Generator().manual_seed(5)), want, rtol=0, atol=1e-6)
        torch.testing.assert_close(codec.encode(image, noise=noise), want, rtol=0, atol=1e-6)
        torch.manual_seed(5)  # no generator: the global RNG, as the official scripts draw
        torch.testing.assert_close(codec.encode(image), want, rtol=0, atol=1e-6)
        assert (codec.encode(image, torch.Generator().manual_seed(6)) - want).abs().max() > 1e-3
    assert not LatentCodec("flux2", TINY.latents, PixelShuffleAutoencoder(4)).samples  # no posterior to sample
    with pytest.raises(ValueError, match="unknown latent mode"):
        LatentCodec("zimage", spec, tiny_kl_vae, latent="mean").encode(image)


def test_encode_rejects_sizes_off_the_pixel_multiple():
    codec = LatentCodec("flux2", TINY.latents, PixelShuffleAutoencoder(4))
    with pytest.raises(ValueError, match="multiples of 8"):
        codec.encode(torch.zeros(1, 3, 12, 16))
