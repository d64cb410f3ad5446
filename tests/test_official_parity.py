"""strsr against the official StrSR inference scripts (test_flux.py / test_zimage.py of jkwang28/StrSR), on tiny
models of the very same classes.

The official algorithm is written out plainly here, from the scripts' behaviour: bicubic x4 of the whole image and
a reflect pad to 16, the tile plan and its linear ramps, the Qwen3-VL features through qwen-vl-utils 0.0.8's own
`process_vision_info`, the VAE posterior *sample* from the global RNG, timesteps from the integer model_t, the
Euler step with a float32 0.8, the blend clamped once, and torchvision's ToPILImage for the 8-bit result. strsr
must reproduce it bit for bit in float32 (same weights, `torch.manual_seed(S)` before the official run, `seed=S`
for strsr), and within bfloat16 noise in bfloat16.
"""

from __future__ import annotations

import numpy as np
import pytest
import qwen_vl_utils
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from strsr.inference.pipeline import SuperResolver
from strsr.inference.tiling import feather_weights, plan_tiles
from strsr.io.images import image_from_pil
from strsr.model.adapter import VLMConditioning, adapter_for
from strsr.model.backbones import build_transformer
from strsr.model.conditioning import NullConditioning
from strsr.model.generator import StrSRGenerator
from strsr.model.lora import add_lora
from strsr.model.vlm import DEFAULT_VLM_PROMPT, VLMEncoder

TILE, OVERLAP = 48, 12  # output pixels; with the LR below: 3 x 4 tiles, the last ones shifted back to the edge


# --------------------------------------------------------------------------------- the official algorithm


def official_tile_coords(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    stride = max(1, tile - overlap)
    ys = list(range(0, max(1, height - tile + 1), stride))
    xs = list(range(0, max(1, width - tile + 1), stride))
    if ys[-1] != max(0, height - tile):
        ys.append(max(0, height - tile))
    if xs[-1] != max(0, width - tile):
        xs.append(max(0, width - tile))
    return [(y, x) for y in ys for x in xs]


def official_mask(y, x, patch_h, patch_w, height, width, tile, overlap) -> torch.Tensor:
    mask = torch.ones((1, 1, patch_h, patch_w))
    if y > 0:
        mask[:, :, :overlap, :] *= torch.linspace(0, 1, overlap).view(1, 1, -1, 1)
    if y + tile < height:
        mask[:, :, -overlap:, :] *= torch.linspace(1, 0, overlap).view(1, 1, -1, 1)
    if x > 0:
        mask[:, :, :, :overlap] *= torch.linspace(0, 1, overlap).view(1, 1, 1, -1)
    if x + tile < width:
        mask[:, :, :, -overlap:] *= torch.linspace(1, 0, overlap).view(1, 1, 1, -1)
    return mask


class Official:
    """The official per-tile path over given modules: `condition(lq)` once per image, `tile(patch, cond)`."""

    def __init__(self, family, transformer, vae, projector, vlm, processor, dtype=torch.float32, model_t=800):
        self.family, self.G, self.vae, self.projector = family, transformer, vae, projector
        self.vlm, self.processor, self.dtype, self.model_t = vlm, processor, dtype, model_t

    def condition(self, lq: torch.Tensor) -> torch.Tensor:
        pixels = (lq * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        messages = [[{"role": "user", "content": [{"type": "image", "image": Image.fromarray(pixels[0])},
                                                  {"type": "text", "text": DEFAULT_VLM_PROMPT}]}]]  # fmt: skip
        texts = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
        images, videos = qwen_vl_utils.process_vision_info(messages)
        inputs = self.processor(text=texts, images=images, videos=videos, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = self.vlm.model(**inputs, output_hidden_states=True).last_hidden_state
        keep = (inputs.attention_mask[0] == 1) & (inputs.input_ids[0] != self.vlm.config.image_token_id)
        tokens = hidden[0][keep].to(self.dtype)
        if self.family == "flux2":
            tokens = tokens[:512]
        return self.projector(tokens)  # (L, D)

    def tile(self, patch: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        lq = (patch * 2.0 - 1.0).to(self.dtype)
        z = self.vae.encode(lq).latent_dist.sample()
        sigmas = torch.tensor([800 / 1000.0, 0], dtype=torch.float32)
        if self.family == "zimage":
            t = (1000 - torch.full((1,), self.model_t, dtype=torch.long)) / 1000
            out = self.G([z.to(self.dtype).unsqueeze(2)[0]], t, [cond.to(self.dtype)])[0]
            v = -torch.stack([o.float() for o in out], dim=0).squeeze(2)
            z0 = z.float() - (sigmas[0] - sigmas[1]) * v
            latent = z0 / self.vae.config.scaling_factor + self.vae.config.shift_factor
            return self.vae.decode(latent.to(self.dtype).contiguous(), return_dict=False)[0].float()
        b, c, h, w = z.shape
        z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        bn = self.vae.bn
        eps = self.vae.config.batch_norm_eps
        mean, std = bn.running_mean.view(1, -1, 1, 1), torch.sqrt(bn.running_var.view(1, -1, 1, 1) + eps)
        z = (z - mean.to(z.dtype)) / std.to(z.dtype)
        _, channels, h, w = z.shape
        tokens = z.reshape(b, channels, h * w).permute(0, 2, 1)
        t = torch.full((b,), self.model_t, dtype=torch.long).to(self.dtype) / 1000
        img_ids = torch.zeros(b, h * w, 4, dtype=self.dtype)
        grid_h, grid_w = torch.meshgrid(torch.arange(h, dtype=self.dtype), torch.arange(w, dtype=self.dtype),
                                        indexing="ij")  # fmt: skip
        img_ids[:, :, 1], img_ids[:, :, 2] = grid_h.reshape(-1), grid_w.reshape(-1)
        text = cond[None].to(self.dtype)
        txt_ids = torch.zeros(b, text.shape[1], 4, dtype=self.dtype)
        txt_ids[:, :, 3] = torch.arange(text.shape[1], dtype=self.dtype)
        v = self.G(hidden_states=tokens.to(self.dtype), timestep=t, guidance=None, encoder_hidden_states=text,
                   txt_ids=txt_ids, img_ids=img_ids, joint_attention_kwargs=None, return_dict=False)[0]  # fmt: skip
        tokens = tokens.float() - (sigmas[0] - sigmas[1]) * v.float()
        z0 = tokens.permute(0, 2, 1).reshape(b, channels, h, w)
        z0 = z0 * std.to(z0.dtype) + mean.to(z0.dtype)
        latent = z0.reshape(b, channels // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, channels // 4, h * 2,
                                                                                            w * 2)  # fmt: skip
        return self.vae.decode(latent.to(self.dtype), return_dict=False)[0].float()


@torch.no_grad()
def official_infer_tiled(model: Official, lq: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    up = F.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    orig_h, orig_w = up.shape[-2:]
    pad_h, pad_w = (-orig_h) % 16, (-orig_w) % 16
    if pad_h or pad_w:
        up = F.pad(up, (0, pad_w, 0, pad_h), mode="reflect")
    height, width = up.shape[-2:]
    out_acc = torch.zeros((1, 3, height, width))
    w_acc = torch.zeros((1, 1, height, width))
    cond = model.condition(lq)
    for y, x in official_tile_coords(height, width, tile, overlap):
        patch = up[:, :, y : y + tile, x : x + tile]
        patch_h, patch_w = patch.shape[-2:]
        mask = official_mask(y, x, patch_h, patch_w, height, width, tile, overlap)
        out_acc[:, :, y : y + patch_h, x : x + patch_w] += model.tile(patch, cond) * mask
        w_acc[:, :, y : y + patch_h, x : x + patch_w] += mask
    out = out_acc / w_acc.clamp_min(1e-6)
    out = (out.clamp(-1, 1) + 1.0) / 2.0
    return out[:, :, :orig_h, :orig_w]


def official_png_pixels(out: torch.Tensor) -> np.ndarray:
    """What the official `save_tensor_image` writes: ToPILImage of the clamped float image."""
    return np.asarray(transforms.ToPILImage()(out.clamp(0, 1).squeeze(0)))


# ------------------------------------------------------------------------------------------------ the plan


@pytest.mark.parametrize("length", [TILE, TILE + 1, 2 * TILE - OVERLAP, 100, 1024 + 1])
@pytest.mark.parametrize(("tile", "overlap"), [(TILE, OVERLAP), (1024, 64), (256, 64)])
def test_tile_plan_and_weights_are_the_official_ones(length, tile, overlap):
    height, width = length, length + 37  # and a width that is not a multiple of 16
    want = official_tile_coords(height, width, tile, overlap)
    tiles = plan_tiles(height, width, tile, overlap)
    assert [(t.top, t.left) for t in tiles] == want
    for t in tiles:
        patch_h, patch_w = min(tile, height - t.top), min(tile, width - t.left)
        assert (t.height, t.width) == (patch_h, patch_w)
        expected = official_mask(t.top, t.left, patch_h, patch_w, height, width, tile, overlap)
        assert torch.equal(feather_weights(t, height, width, overlap), expected)


# ---------------------------------------------------------------------------------------- the whole image


def _lr() -> torch.Tensor:
    """A 23x29 photo crop as the official loader gives it (ToTensor: uint8 / 255): x4 = 92x116, padded to 96x128."""
    from skimage import data

    pixels = data.chelsea()[100:123, 150:179]
    return transforms.ToTensor()(Image.fromarray(pixels)).unsqueeze(0)


def _models(preset, vae, tiny_vlm, randomise_lora, dtype=torch.float32):
    vlm, processor = tiny_vlm
    transformer = add_lora(build_transformer(preset, seed=0), preset.lora_targets, rank=4, alpha=4)
    randomise_lora(transformer, seed=1, std=0.3)
    torch.manual_seed(2)
    adapter = adapter_for(preset, vlm.config.text_config.hidden_size)
    model = StrSRGenerator(preset, transformer, vae, VLMConditioning(adapter, VLMEncoder(vlm, processor)),
                           latent="sample").eval()  # fmt: skip
    model = model.to(dtype)
    model.conditioning.adapter.float()  # strsr keeps the adapter in float32 (the official one follows the dtype)
    projector = adapter_for(preset, vlm.config.text_config.hidden_size).to(dtype)
    projector.load_state_dict(model.conditioning.adapter.state_dict())
    official = Official(preset.family, transformer, vae, projector, vlm, processor, dtype=dtype)
    return model, official


@pytest.fixture(params=["flux2", "zimage"])
def family_models(request, flux2_kl_preset, zimage_kl_preset, tiny_flux2_vae, tiny_kl_vae, tiny_vlm, randomise_lora):
    if request.param == "flux2":
        return flux2_kl_preset, tiny_flux2_vae, tiny_vlm, randomise_lora
    return zimage_kl_preset, tiny_kl_vae, tiny_vlm, randomise_lora


def test_float32_output_equals_the_official_bit_for_bit(family_models):
    model, official = _models(*family_models)
    lr = _lr()
    for seed in (0, 7):
        torch.manual_seed(seed)
        want = official_infer_tiled(official, lr, TILE, OVERLAP)
        resolver = SuperResolver(model, tile=TILE, overlap=OVERLAP, seed=seed)
        got = resolver.upscale_tensor(lr)
        assert got.shape == want.shape == (1, 3, 92, 116)
        assert torch.equal(got, want)
        samples = resolver.upscale_image(image_from_pil(transforms.ToPILImage()(lr[0]))).samples
        assert np.array_equal(samples, official_png_pixels(want))


def test_sampled_latents_are_deterministic_per_seed_and_differ_across_seeds(family_models):
    model, _ = _models(*family_models)
    lr = _lr()
    a, b = (SuperResolver(model, tile=TILE, overlap=OVERLAP, seed=s).upscale_tensor(lr) for s in (3, 3))
    c = SuperResolver(model, tile=TILE, overlap=OVERLAP, seed=4).upscale_tensor(lr)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    model.codec.latent = "mode"
    d, e = (SuperResolver(model, tile=TILE, overlap=OVERLAP, seed=s).upscale_tensor(lr) for s in (3, 4))
    assert torch.equal(d, e) and (d - a).abs().max() > 1e-3


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.double() - b.double()).square().mean()))


def test_bfloat16_stays_within_bfloat16_noise_of_the_official(family_models):
    """CPU bf16 as a proxy for the official GPU bf16 run: strsr's bf16 output is no farther from the official bf16
    output than bf16 itself is from float32 (plus 3 dB of slack)."""
    lr = _lr()
    torch.manual_seed(0)
    reference = official_infer_tiled(_models(*family_models)[1], lr, TILE, OVERLAP)
    model, official = _models(*family_models, dtype=torch.bfloat16)
    torch.manual_seed(0)
    want = official_infer_tiled(official, lr, TILE, OVERLAP)
    got = SuperResolver(model, tile=TILE, overlap=OVERLAP, seed=0).upscale_tensor(lr)
    noise_floor = _psnr(want, reference)
    assert _psnr(got, want) >= noise_floor - 3, (_psnr(got, want), noise_floor)


def test_the_transformer_sees_800_or_200_under_bfloat16(family_models):
    """The timestep that reaches the time embedding, on the x1000 scale: FLUX.2 800, Z-Image 1000 - 800 = 200."""
    preset, vae = family_models[:2]
    transformer = build_transformer(preset, seed=0, dtype=torch.bfloat16)
    flux2 = preset.family == "flux2"
    seen = []
    embedder = transformer.time_guidance_embed.time_proj if flux2 else transformer.t_embedder
    embedder.register_forward_pre_hook(lambda module, args: seen.append(args[0].float().tolist()))
    model = StrSRGenerator(preset, transformer, vae, NullConditioning(preset.condition_width)).to(torch.bfloat16)
    state = torch.randn(1, preset.latents.channels * (4 if flux2 else 1), 4, 4)
    model.one_step(state, model.conditioning(1))
    assert seen == ([[800.0]] if flux2 else [[200.0]])
