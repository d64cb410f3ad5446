"""LoRA lands on exactly the preset's targets, trains alone, and merges without changing outputs."""

import pytest
import torch
from peft import PeftModel
from torch import nn

from strsr.model.backbones import build_transformer
from strsr.model.build import build_generator
from strsr.model.lora import lora_rank_of, merge_lora, resolve_lora_targets
from strsr.presets import get_preset
from strsr.spec import ModelSpec


def _linear_names(module):
    return {n for n, m in module.named_modules() if isinstance(m, nn.Linear)}


@pytest.mark.parametrize("name", ["tiny", "tiny-zimage"])
def test_lora_only_on_listed_targets(name):
    preset = get_preset(name)
    model = build_generator(ModelSpec(preset=name, random_weights=True))
    assert isinstance(model.transformer, PeftModel)
    adapted = {
        n.removeprefix("base_model.model.") for n, m in model.transformer.named_modules() if hasattr(m, "lora_A")
    }
    plain = build_transformer(preset)  # an unwrapped twin: peft replaces the adapted Linear layers
    expected = {n for n in _linear_names(plain) if any(n.endswith("." + s) for s in preset.lora_targets)}
    assert adapted == expected and adapted
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_A." in n or ".lora_B." in n or n == "conditioning.embedding" for n in trainable)
    assert "conditioning.embedding" in trainable
    assert lora_rank_of(model.transformer) == preset.lora_rank


def test_flux2_double_block_out_is_the_list_entry():
    names = resolve_lora_targets(build_transformer(get_preset("tiny")), get_preset("tiny").lora_targets)
    assert "transformer_blocks.0.attn.to_out.0" in names
    assert "transformer_blocks.0.attn.to_out" not in names  # a ModuleList, not a Linear
    assert "single_transformer_blocks.0.attn.to_out" in names


@pytest.mark.parametrize("name", ["tiny", "tiny-zimage"])
def test_merge_and_unload_reproduces_outputs(name, randomise_lora):
    model = build_generator(ModelSpec(preset=name, seed=4, random_weights=True))
    randomise_lora(model.transformer, seed=5)
    image = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        before = model(image)
        model.transformer.disable_adapter_layers()
        plain = model(image)
        model.transformer.enable_adapter_layers()
        model.transformer = merge_lora(model.transformer)
        after = model(image)
    assert not isinstance(model.transformer, PeftModel)
    assert (before - plain).abs().max() > 1e-3  # the adapters matter
    assert (before - after).abs().max() < 1e-5


def test_full_finetune_when_rank_is_zero():
    model = build_generator(ModelSpec(preset="tiny", lora_rank=0, random_weights=True))
    assert not isinstance(model.transformer, PeftModel)
    assert all(p.requires_grad for p in model.transformer.parameters())
    assert lora_rank_of(model.transformer) is None


def test_custom_rank_keeps_alpha_ratio():
    model = build_generator(ModelSpec(preset="tiny", lora_rank=4, random_weights=True))
    assert lora_rank_of(model.transformer) == 4
    config = model.transformer.peft_config["default"]
    assert config.lora_alpha == 4 and config.init_lora_weights == "gaussian"


def test_lora_weights_stay_fp32_on_a_bf16_base():
    model = build_generator(ModelSpec(preset="tiny", precision="bf16", random_weights=True))
    lora = [p for n, p in model.transformer.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    assert model.diffusers_transformer.x_embedder.weight.dtype == torch.bfloat16
    fp32 = build_generator(ModelSpec(preset="tiny", random_weights=True))  # the same seeded weights in fp32
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out, want = model(image), fp32(image)
    assert out.dtype == torch.float32
    psnr = 10 * torch.log10(4 / (out - want).square().mean())  # the [-1, 1] range: peak-to-peak 2
    assert psnr > 25, psnr  # bf16 rounding through the random DiT: measured 29.1 dB
