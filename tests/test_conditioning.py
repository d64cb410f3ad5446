"""Text conditioning on a tiny random Qwen3 with an offline tokenizer, against the diffusers pipelines' encoders."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline

from strsr.model.build import build_generator
from strsr.model.conditioning import encode_prompt_flux2, encode_prompt_zimage
from strsr.spec import ModelSpec


@pytest.fixture(scope="module")
def tokenizer(tiny_text_tokenizer):
    return tiny_text_tokenizer


def test_flux2_prompt_is_concatenated_layers_over_the_padded_chat(tiny_qwen3, tokenizer):
    encoder = tiny_qwen3(32)
    cond = encode_prompt_flux2(encoder, tokenizer, "a sharp photo of cat", layers=(1, 2), max_length=24)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "a sharp photo of cat"}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)  # fmt: skip
    ids = tokenizer(text, padding="max_length", max_length=24, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**ids, output_hidden_states=True).hidden_states
    expected = torch.cat([hidden[1], hidden[2]], dim=-1)  # (1, 24, 64): layer 1 then layer 2 per token
    torch.testing.assert_close(cond.tokens, expected, rtol=1e-6, atol=1e-6)
    assert cond.mask is None  # FLUX.2 klein attends to the padded prompt unmasked


def test_zimage_prompt_matches_the_zimage_pipeline(tiny_qwen3, tokenizer):
    encoder = tiny_qwen3(64)
    pipe = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=encoder, tokenizer=tokenizer,
        transformer=build_generator(ModelSpec(preset="tiny-zimage", random_weights=True)).diffusers_transformer,
    )  # fmt: skip
    expected = pipe._encode_prompt("a photo of the sofa", device=torch.device("cpu"), max_sequence_length=20)[0]
    cond = encode_prompt_zimage(encoder, tokenizer, "a photo of the sofa", max_length=20)
    assert cond.mask.shape == (1, 20) and 0 < cond.mask.sum() < 20
    torch.testing.assert_close(cond.tokens[0][cond.mask[0]], expected, rtol=1e-6, atol=1e-6)


def _text_encoder_dir(folder, encoder, tokenizer):
    """A folder with text_encoder/ and tokenizer/, as --text-encoder expects."""
    encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    return folder


@pytest.mark.parametrize("name,hidden", [("tiny", 32), ("tiny-zimage", 64)])
def test_text_conditioned_generator_runs_and_depends_on_the_prompt(tiny_qwen3, name, hidden, tokenizer, tmp_path):
    folder = _text_encoder_dir(tmp_path, tiny_qwen3(hidden), tokenizer)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    outs = []
    for prompt in ("a sharp photo of cat", "the sofa"):
        spec = ModelSpec(preset=name, conditioning="text", prompt=prompt, text_encoder=folder, random_weights=True)
        model = build_generator(spec)
        assert not any(p.requires_grad for p in model.conditioning.parameters())
        with torch.no_grad():
            outs.append(model(image))
    assert (outs[0] - outs[1]).abs().max() > 1e-4


def test_text_conditioning_width_mismatch_is_a_clear_error(tiny_qwen3, tokenizer, tmp_path):
    folder = _text_encoder_dir(tmp_path, tiny_qwen3(24), tokenizer)
    with pytest.raises(ValueError, match="48-wide embeddings.*expects 64"):
        build_generator(ModelSpec(preset="tiny", conditioning="text", text_encoder=folder, random_weights=True))


def test_text_conditioning_without_an_encoder_names_the_fix():
    with pytest.raises(ValueError, match="--pretrained"):
        build_generator(ModelSpec(preset="tiny", conditioning="text", random_weights=True))
