"""The one-step Euler update for both backbones against a hand computation with the raw diffusers calls."""

import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline as Klein

from strsr.model.backbones import Condition, build_transformer
from strsr.model.build import build_generator
from strsr.model.conditioning import NullConditioning
from strsr.model.generator import StrSRGenerator
from strsr.spec import ModelSpec

T1 = 0.8


def test_flux2_one_step_by_hand(flux2_kl_preset, tiny_flux2_vae):
    preset = flux2_kl_preset
    transformer = build_transformer(preset, seed=1).eval()
    null = NullConditioning(preset.condition_width, 3)
    with torch.no_grad():
        null.embedding.normal_()
    model = StrSRGenerator(preset, transformer, tiny_flux2_vae, null, latent="mode").eval()
    image = torch.rand(2, 3, 16, 20) * 2 - 1

    vae, bn = tiny_flux2_vae, tiny_flux2_vae.bn
    with torch.no_grad():
        latent = vae.encode(image).latent_dist.mode()
        mean = bn.running_mean.view(1, -1, 1, 1)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
        z = (Klein._patchify_latents(latent) - mean) / std
        tokens = Klein._pack_latents(z)
        cond = null.embedding[None].expand(2, -1, -1)
        v = transformer(
            hidden_states=tokens, encoder_hidden_states=cond, timestep=torch.full((2,), T1),
            img_ids=Klein._prepare_latent_ids(z), txt_ids=Klein._prepare_text_ids(cond), return_dict=False,
        )[0]  # fmt: skip
        z0 = tokens - T1 * v
        z0 = Klein._unpack_latents_with_ids(z0, Klein._prepare_latent_ids(z), z.shape[2], z.shape[3])
        expected = vae.decode(Klein._unpatchify_latents(z0 * std + mean)).sample
        got = model(image)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (got - vae.decode(latent).sample).abs().max() > 1e-3  # the step did something


def test_zimage_one_step_by_hand(zimage_kl_preset, tiny_kl_vae):
    preset = zimage_kl_preset
    transformer = build_transformer(preset, seed=2).eval()
    null = NullConditioning(preset.condition_width, 5)
    with torch.no_grad():
        null.embedding.normal_()
    model = StrSRGenerator(preset, transformer, tiny_kl_vae, null, latent="mode").eval()
    image = torch.rand(2, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        z = tiny_kl_vae.encode(image).latent_dist.mode()  # raw latent: no shift/scale on encode
        out = transformer(list(z.unsqueeze(2).unbind(0)), torch.full((2,), 1 - T1), [null.embedding] * 2,
                          return_dict=False)[0]  # fmt: skip
        v = -torch.stack(out).squeeze(2)  # Z-Image predicts the negated velocity
        z0 = z - T1 * v
        expected = tiny_kl_vae.decode(z0 / 0.3611 + 0.1159).sample
        got = model(image)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_zimage_masked_condition_drops_padding():
    model = build_generator(ModelSpec(preset="tiny-zimage", seed=3, random_weights=True))
    state = torch.randn(1, 48, 4, 4)
    tokens = torch.randn(1, 6, 64)
    mask = torch.tensor([[True, True, True, False, False, False]])
    with torch.no_grad():
        masked = model.velocity(state, Condition(tokens, mask))
        trimmed = model.velocity(state, Condition(tokens[:, :3]))
    torch.testing.assert_close(masked, trimmed, rtol=0, atol=0)


def test_zero_velocity_gives_the_autoencoder_round_trip():
    model = build_generator(ModelSpec(preset="tiny", seed=0, random_weights=True))
    with torch.no_grad():
        model.diffusers_transformer.proj_out.weight.zero_()
        image = torch.rand(1, 3, 16, 16) * 2 - 1
        torch.testing.assert_close(model(image), image, rtol=0, atol=1e-6)
