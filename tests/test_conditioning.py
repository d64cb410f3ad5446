"""Text conditioning on a tiny random Qwen3 with an offline tokenizer, against the diffusers pipelines' encoders."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from strsr.build import build_generator
from strsr.conditioning import encode_prompt_flux2, encode_prompt_zimage

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% if not enable_thinking %}<think> </think> {% endif %}"
    "{% endif %}"
)
WORDS = "<pad> <unk> <|im_start|> <|im_end|> <think> </think> user assistant a sharp photo of cat on the sofa".split()


@pytest.fixture(scope="module")
def tokenizer():
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _qwen3(hidden, layers=3, seed=0):
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(WORDS), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
    )  # fmt: skip
    return Qwen3Model(config).eval()


def test_flux2_prompt_is_concatenated_layers_over_the_padded_chat(tokenizer):
    encoder = _qwen3(32)
    cond = encode_prompt_flux2(encoder, tokenizer, "a sharp photo of cat", layers=(1, 2), max_length=24)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "a sharp photo of cat"}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)  # fmt: skip
    ids = tokenizer(text, padding="max_length", max_length=24, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**ids, output_hidden_states=True).hidden_states
    expected = torch.cat([hidden[1], hidden[2]], dim=-1)  # (1, 24, 64): layer 1 then layer 2 per token
    torch.testing.assert_close(cond.tokens, expected, rtol=1e-6, atol=1e-6)
    assert cond.mask is None  # FLUX.2 klein attends to the padded prompt unmasked


def test_zimage_prompt_matches_the_zimage_pipeline(tokenizer):
    encoder = _qwen3(64)
    pipe = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=encoder, tokenizer=tokenizer,
        transformer=build_generator("tiny-zimage").diffusers_transformer,
    )  # fmt: skip
    expected = pipe._encode_prompt("a photo of the sofa", device=torch.device("cpu"), max_sequence_length=20)[0]
    cond = encode_prompt_zimage(encoder, tokenizer, "a photo of the sofa", max_length=20)
    assert cond.mask.shape == (1, 20) and 0 < cond.mask.sum() < 20
    torch.testing.assert_close(cond.tokens[0][cond.mask[0]], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,hidden", [("tiny", 32), ("tiny-zimage", 64)])
def test_text_conditioned_generator_runs_and_depends_on_the_prompt(name, hidden, tokenizer):
    encoder = _qwen3(hidden)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    outs = []
    for prompt in ("a sharp photo of cat", "the sofa"):
        model = build_generator(name, conditioning="text", prompt=prompt, text_encoder=encoder, tokenizer=tokenizer)
        assert not any(p.requires_grad for p in model.conditioning.parameters())
        with torch.no_grad():
            outs.append(model(image))
    assert (outs[0] - outs[1]).abs().max() > 1e-4


def test_text_conditioning_width_mismatch_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="48-wide embeddings.*expects 64"):
        build_generator("tiny", conditioning="text", text_encoder=_qwen3(24), tokenizer=tokenizer)


def test_text_conditioning_without_an_encoder_names_the_fix():
    with pytest.raises(ValueError, match="--pretrained"):
        build_generator("tiny", conditioning="text")
