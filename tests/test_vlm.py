"""The VLM feature path (E_VLM) on a tiny random Qwen3-VL, and the adapter MLP (f_adapt) for both backbones."""

import re
from importlib.metadata import version

import numpy as np
import pytest
import qwen_vl_utils
import torch
from PIL import Image

from strsr.model.adapter import VLMAdapter, VLMConditioning, adapter_for
from strsr.model.backbones import build_transformer, predict_velocity
from strsr.model.vlm import (
    DEFAULT_VLM_PROMPT,
    MAX_VLM_TOKENS,
    VLMEncoder,
    load_vlm,
    pre_resize,
    pre_resize_size,
    text_positions,
    to_uint8,
)
from strsr.presets import get_preset
from strsr.spec import MissingWeightsError

WIDTH = 32  # the text width of conftest's tiny Qwen3-VL


@pytest.fixture(scope="module")
def vlm_folder(tiny_vlm_dir):
    return tiny_vlm_dir


def _lr(seed, h=20, w=28, batch=1):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _reference(model, processor, image, prompt=DEFAULT_VLM_PROMPT):
    """Features the official way: the image as the official scripts pass it (x 255, truncated, a PIL image) through
    qwen-vl-utils' own `process_vision_info`, our own processor call, a full forward, positions picked by a loop."""
    pixels = (image.float() * 255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.fromarray(pixels)},
                                             {"type": "text", "text": prompt}]}]  # fmt: skip
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images, videos = qwen_vl_utils.process_vision_info(messages)
    assert videos is None
    inputs = processor(text=[text], images=images, return_tensors="pt")
    with torch.no_grad():
        hidden = model.model(**inputs).last_hidden_state[0]
    ids, attn = inputs["input_ids"][0].tolist(), inputs["attention_mask"][0].tolist()
    keep = [i for i, (t, a) in enumerate(zip(ids, attn)) if a == 1 and t != model.config.image_token_id]
    return hidden[keep], ids


def test_default_prompt_is_the_official_one_verbatim():
    assert DEFAULT_VLM_PROMPT == (
        "Descibe this image in detail, especially the text in image. Cinematic, hyper sharpness, highly detailed, "
        "perfect without deformations. Camera, hyper detailed photo, realistic maximum detail, 32k, Color. Grading, "
        "ultra HD, extreme meticulous detailing, skin pore detailing"
    )
    assert MAX_VLM_TOKENS == 512


def test_the_reference_is_qwen_vl_utils_0_0_8():
    # newer releases change the resize factor for Qwen3-VL; the official scripts pin 0.0.8
    assert version("qwen-vl-utils") == "0.0.8"


# (height, width): tiny, odd, exact multiples, Python's round-half-to-even at 1.5 and 2.5 patches, above the pixel
# cap, and aspect ratios up to the 200 limit.
PRE_RESIZE_SIZES = [(1, 1), (1, 5), (3, 3), (7, 2), (37, 53), (251, 199), (28, 28), (56, 84), (42, 70), (70, 42),
                    (96, 64), (384, 256), (1, 200), (200, 1), (2, 399), (3000, 4000), (4096, 4096), (5000, 3000)]


@pytest.mark.parametrize(("height", "width"), PRE_RESIZE_SIZES)
def test_pre_resize_size_matches_qwen_vl_utils(height, width):
    want = qwen_vl_utils.smart_resize(height, width, factor=28, min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28)
    assert pre_resize_size(height, width) == want


@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 3), (7, 2), (37, 53), (96, 64), (1, 200), (251, 199)])
def test_pre_resize_gives_the_official_pixels(height, width):
    gen = torch.Generator().manual_seed(height * 1000 + width)
    pixels = torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)
    want = qwen_vl_utils.fetch_image({"type": "image", "image": Image.fromarray(pixels.permute(1, 2, 0).numpy())})
    got = pre_resize(pixels)
    assert got.mode == "RGB" and got.size == want.size
    assert np.array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize(("height", "width"), [(1, 201), (300, 1), (2, 401)])
def test_too_elongated_images_are_refused_like_qwen_vl_utils(height, width):
    with pytest.raises(ValueError, match="aspect ratio"):
        qwen_vl_utils.smart_resize(height, width)
    with pytest.raises(ValueError, match="too elongated for the VLM"):
        pre_resize_size(height, width)


def test_float_images_become_pixels_as_the_official_scripts_make_them():
    x = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(0))
    assert torch.equal(to_uint8(x), (x * 255).clamp(0, 255).to(torch.uint8))  # truncation, not rounding
    decoded = torch.randint(0, 256, (3, 9, 11), dtype=torch.uint8)
    assert torch.equal(to_uint8(decoded.float() / 255), decoded)  # an 8-bit file's pixels come back exactly


def test_text_positions_match_a_naive_loop():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (4, 40), generator=gen)
    attn = torch.rand(4, 40, generator=gen) > 0.2
    for cap in (3, 512):
        got = text_positions(ids, attn, image_token_id=5, max_tokens=cap)
        for row, positions in enumerate(got):
            want = [i for i in range(40) if attn[row, i] and ids[row, i] != 5][:cap]
            assert positions.tolist() == want


def test_chat_text_is_image_then_prompt_then_generation_prompt(tiny_vlm):
    encoder = VLMEncoder(*tiny_vlm)
    assert encoder.text == (
        f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{DEFAULT_VLM_PROMPT}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_features_skip_image_tokens_and_match_a_reference(tiny_vlm):
    model, processor = tiny_vlm
    encoder = VLMEncoder(model, processor)
    image = _lr(1)
    tokens, mask = encoder.encode(image)
    want, ids = _reference(model, processor, image[0])
    num_image = ids.count(model.config.image_token_id)
    assert num_image > 0 and tokens.shape == (1, len(ids) - num_image, WIDTH)
    assert tokens.dtype == torch.float32 and mask.all()
    torch.testing.assert_close(tokens[0], want, rtol=0, atol=1e-6)
    # The length is that of the template and prompt, whatever the image size (more image tokens, same L).
    bigger, _ = encoder.encode(_lr(2, 40, 44))
    assert bigger.shape == tokens.shape
    # The kept tokens attended to the image: another image changes them.
    assert (encoder.encode(_lr(3))[0] - tokens).abs().max() > 1e-4


def test_truncation_keeps_the_first_positions(tiny_vlm):
    full, _ = VLMEncoder(*tiny_vlm).encode(_lr(4))
    assert full.shape[1] > 7
    cut, mask = VLMEncoder(*tiny_vlm, max_tokens=7).encode(_lr(4))
    assert cut.shape == (1, 7, WIDTH) and mask.all()
    torch.testing.assert_close(cut, full[:, :7], rtol=0, atol=1e-6)


def test_deterministic_and_cached_once_per_image(tiny_vlm, monkeypatch):
    encoder = VLMEncoder(*tiny_vlm)
    calls = []
    real_run = encoder._run
    monkeypatch.setattr(encoder, "_run", lambda pixels: calls.append(len(pixels)) or real_run(pixels))
    a, b = _lr(5), _lr(6)
    first, _ = encoder.encode(torch.cat([a, b, a]))  # a repeated image runs once
    assert calls == [2]
    again, _ = encoder.encode(a)
    assert calls == [2] and torch.equal(again[0], first[0]) and torch.equal(first[0], first[2])
    encoder.clear_cache()
    recomputed, _ = encoder.encode(a)
    assert calls == [2, 1] and torch.equal(recomputed[0], again[0])
    # A float image and its uint8 pixels are the same image.
    encoder.encode((a * 255).to(torch.uint8))
    assert calls == [2, 1]


def test_cache_is_bounded(tiny_vlm):
    encoder = VLMEncoder(*tiny_vlm, cache_size=2)
    for seed in range(4):
        encoder.encode(_lr(seed, 8, 8))
    assert len(encoder._cache) == 2
    tiny = VLMEncoder(*tiny_vlm, cache_size=1)
    old, new = _lr(0, 8, 8), _lr(1, 8, 8)
    want = tiny.encode(old)[0]
    both, _ = tiny.encode(torch.cat([new, old]))  # the new image evicts the hit while the batch is assembled
    assert torch.equal(both[1], want[0]) and len(tiny._cache) == 1


def test_vlm_is_frozen(tiny_vlm):
    encoder = VLMEncoder(*tiny_vlm)
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.model.parameters())
    tokens, _ = encoder.encode(_lr(7))
    assert not tokens.requires_grad


def test_load_from_a_local_folder(tiny_vlm, vlm_folder):
    model, processor = tiny_vlm
    encoder = VLMEncoder.from_pretrained(vlm_folder)
    assert not hasattr(encoder.model, "lm_head") and encoder.width == WIDTH
    torch.testing.assert_close(encoder.encode(_lr(8))[0], VLMEncoder(model, processor).encode(_lr(8))[0])


def test_missing_files_are_named(vlm_folder, tmp_path):
    with pytest.raises(MissingWeightsError, match="missing Qwen3-VL folder"):
        load_vlm(tmp_path / "nowhere")
    cases = {"config.json": "config.json", "processor_config.json": "preprocessor_config.json",
             "tokenizer.json": "tokenizer", "model.safetensors": "no Qwen3-VL weights"}  # fmt: skip
    for name, message in cases.items():
        partial = tmp_path / name
        partial.mkdir()
        for f in vlm_folder.iterdir():
            if f.name != name and not (name == "tokenizer.json" and f.name.startswith("tokenizer")):
                (partial / f.name).symlink_to(f)
        with pytest.raises(MissingWeightsError, match=re.escape(message)):
            load_vlm(partial)


def test_processor_of_another_model_is_refused(tiny_vlm, tiny_vlm_processor_factory):
    model, processor = tiny_vlm
    other = tiny_vlm_processor_factory()
    other.image_processor.patch_size = 14
    with pytest.raises(ValueError, match="patch/merge/temporal"):
        VLMEncoder(model, other)


@pytest.mark.parametrize(("name", "hidden"), [("flux2-klein-4b", 3840), ("zimage-turbo", 1280)])
def test_adapter_shapes_for_the_full_backbones(name, hidden):
    preset = get_preset(name)
    with torch.device("meta"):
        adapter = adapter_for(preset)
    shapes = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    width = preset.condition_width
    assert shapes == {"0.weight": (hidden, 2560), "0.bias": (hidden,), "2.weight": (width, hidden), "2.bias": (width,)}
    assert isinstance(adapter[1], torch.nn.SiLU)
    assert adapter(torch.empty(2, 9, 2560, device="meta")).shape == (2, 9, width)


def test_adapter_is_linear_silu_linear():
    torch.manual_seed(0)
    adapter = VLMAdapter(12, 10)
    x = torch.randn(2, 5, 12)
    w0, b0, w2, b2 = (adapter.state_dict()[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias"))
    h = x @ w0.T + b0
    torch.testing.assert_close(adapter(x), (h * torch.sigmoid(h)) @ w2.T + b2)
    with pytest.raises(ValueError, match="even condition width"):
        VLMAdapter(12, 11)


@pytest.mark.parametrize("name", ["tiny", "tiny-zimage"])
def test_vlm_condition_drives_both_tiny_dits_and_trains_only_the_adapter(tiny_vlm, name):
    preset = get_preset(name)
    encoder = VLMEncoder(*tiny_vlm)
    torch.manual_seed(0)
    conditioning = VLMConditioning(adapter_for(preset, encoder.width), encoder)
    assert set(conditioning.state_dict()) == {"adapter.0.weight", "adapter.0.bias", "adapter.2.weight",
                                              "adapter.2.bias"}  # fmt: skip
    condition = conditioning(_lr(9, batch=2))
    assert condition.tokens.shape[::2] == (2, preset.condition_width) and condition.mask is None
    transformer = build_transformer(preset, seed=0).requires_grad_(False)
    state = torch.randn(2, preset.latents.channels * (4 if preset.family == "flux2" else 1), 4, 4)
    velocity = predict_velocity(preset, transformer, state, preset.model_t, condition)
    assert velocity.shape == state.shape and torch.isfinite(velocity).all()
    velocity.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conditioning.adapter.parameters())
    assert all(p.grad is None for p in encoder.model.parameters())


def test_encoder_width_must_match_the_adapter(tiny_vlm):
    with pytest.raises(ValueError, match="32-wide features"):
        VLMConditioning(VLMAdapter(2560, 64), VLMEncoder(*tiny_vlm))
    with pytest.raises(ValueError, match="no VLM"):
        VLMConditioning(VLMAdapter(WIDTH, 64))(_lr(0))


def test_processor_without_mm_token_type_ids_is_refused(tiny_vlm):
    model, processor = tiny_vlm

    class Dropping:  # a processor that forgets the M-RoPE token types
        image_processor, tokenizer, image_token = processor.image_processor, processor.tokenizer, processor.image_token
        apply_chat_template = staticmethod(processor.apply_chat_template)

        def __call__(self, **kwargs):
            out = processor(**kwargs)
            del out["mm_token_type_ids"]
            return out

    with pytest.raises(ValueError, match="mm_token_type_ids"):
        VLMEncoder(model, Dropping()).encode(_lr(0))


def test_a_batch_gives_each_image_its_own_features(tiny_vlm):
    a, b = _lr(10), _lr(11)
    together, mask = VLMEncoder(*tiny_vlm).encode(torch.cat([a, b]))
    alone = [VLMEncoder(*tiny_vlm).encode(x)[0][0] for x in (a, b)]
    assert mask.all()
    torch.testing.assert_close(together, torch.stack(alone), rtol=0, atol=1e-5)
