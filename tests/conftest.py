"""Tiny model builders shared by the tests (real diffusers classes at toy sizes, seeded, no downloads).

Exposed as fixtures: with --import-mode=importlib test modules cannot import each other or a helper module.
"""

from __future__ import annotations

import dataclasses
import os

# Kernel tests run on CPU under Triton's interpreter. Triton reads TRITON_INTERPRET when triton.language is first
# imported (some libraries import it early), so it is set here, before anything else. Every other test keeps the
# plain-PyTorch kernels: "auto" would otherwise pick the slow interpreter. A GPU run (bench/gpu-check) sets
# STRSR_TEST_ON_GPU=1 to compile the kernels for real.
if os.environ.get("STRSR_TEST_ON_GPU") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("STRSR_KERNEL_BACKEND", "reference")

import re  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, AutoencoderKLFlux2  # noqa: E402
from tokenizers import Regex, Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessor,
    Qwen3Config,
    Qwen3Model,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from strsr.model.vlm import DEFAULT_VLM_PROMPT  # noqa: E402
from strsr.presets import TINY, TINY_ZIMAGE, LatentSpec, Preset  # noqa: E402

TINY_VAE_CONFIG = dict(
    block_out_channels=(32, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
)


def _tiny_flux2_vae(seed: int = 0) -> AutoencoderKLFlux2:
    """A 2x-down AutoencoderKLFlux2 with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(**TINY_VAE_CONFIG).eval()
    vae.bn.running_mean.copy_(torch.randn(16) * 0.3)
    vae.bn.running_var.copy_(torch.rand(16) + 0.5)
    return vae


def _tiny_kl_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**TINY_VAE_CONFIG, scaling_factor=0.3611, shift_factor=0.1159).eval()


def _flux2_kl_preset() -> Preset:
    """The tiny FLUX.2 preset moved onto a real (tiny) AutoencoderKLFlux2: 4 latent channels, 2x down."""
    config = dict(TINY.transformer_config, in_channels=16)
    return dataclasses.replace(
        TINY, name="tiny-flux2-kl", transformer_config=config,
        latents=LatentSpec(autoencoder="flux2-kl", vae_scale=2, channels=4),
    )  # fmt: skip


def _zimage_kl_preset() -> Preset:
    config = dict(TINY_ZIMAGE.transformer_config, in_channels=4)
    return dataclasses.replace(
        TINY_ZIMAGE, name="tiny-zimage-kl", transformer_config=config,
        latents=LatentSpec(autoencoder="kl", vae_scale=2, channels=4, scaling_factor=0.3611, shift_factor=0.1159),
    )  # fmt: skip


def _randomise_lora(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Give LoRA B matrices non-zero values (gaussian init leaves them at zero) so adapters change outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture
def tiny_flux2_vae():
    return _tiny_flux2_vae()


@pytest.fixture
def tiny_kl_vae():
    return _tiny_kl_vae()


@pytest.fixture
def flux2_kl_preset():
    return _flux2_kl_preset()


@pytest.fixture
def zimage_kl_preset():
    return _zimage_kl_preset()


@pytest.fixture
def randomise_lora():
    return _randomise_lora


@pytest.fixture
def kernel_device():
    """Where Triton kernel tests run: the CPU interpreter, or a real GPU when STRSR_TEST_ON_GPU=1."""
    pytest.importorskip("triton")
    if os.environ.get("STRSR_TEST_ON_GPU") == "1":
        if not torch.cuda.is_available():
            pytest.skip("STRSR_TEST_ON_GPU=1 but no CUDA device")
        return torch.device("cuda")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton kernels need a GPU or TRITON_INTERPRET=1 set before triton is imported")
    return torch.device("cpu")


# ----------------------------------------------------------------------------------- tiny Qwen3-VL and Qwen3

VLM_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]  # fmt: skip
# Qwen's template shape: user turn = image placeholder then the prompt, then the generation prompt.
VLM_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.content is string %}{{ m.content }}{% else %}"
    "{% for c in m.content %}{% if c.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH, MERGE, TEMPORAL = 4, 2, 2
VLM_WIDTH = 32


def _vlm_tokenizer():
    """A word-level tokenizer over the default prompt's words and the Qwen3-VL special tokens; no hub files."""
    words = ["[UNK]", "\n", "user", "assistant", *dict.fromkeys(re.findall(r"\w+|[^\w\s]", DEFAULT_VLM_PROMPT))]
    vocab = {w: i for i, w in enumerate(words + VLM_SPECIAL)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"), pre_tokenizers.Split(Regex(r"\n|[^\w\s]"), "isolated")]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="<|endoftext|>",
        additional_special_tokens=VLM_SPECIAL[1:],
    )
    tok.chat_template = VLM_CHAT_TEMPLATE
    return tok


def _vlm_processor():
    images = Qwen2VLImageProcessor(
        patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": 8 * 8, "longest_edge": 48 * 48},
    )  # fmt: skip
    videos = Qwen3VLVideoProcessor(patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE)
    return Qwen3VLProcessor(image_processor=images, tokenizer=_vlm_tokenizer(), video_processor=videos,
                            chat_template=VLM_CHAT_TEMPLATE)  # fmt: skip


def _vlm_model(tokenizer, seed=0):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VLM_SPECIAL}
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=VLM_WIDTH, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                             "mrope_interleaved": True},
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=PATCH, spatial_merge_size=MERGE,
            temporal_patch_size=TEMPORAL, out_hidden_size=VLM_WIDTH, num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(seed)
    return Qwen3VLForConditionalGeneration(config).eval()


@pytest.fixture(scope="session")
def tiny_vlm():
    """A tiny random Qwen3-VL (model, processor): real transformers classes, offline tokenizer and processor."""
    processor = _vlm_processor()
    return _vlm_model(processor.tokenizer), processor


@pytest.fixture(scope="session")
def tiny_vlm_processor_factory():
    return _vlm_processor


@pytest.fixture(scope="session")
def tiny_vlm_dir(tiny_vlm, tmp_path_factory):
    """The tiny Qwen3-VL saved as a local folder, as `--vlm DIR` expects."""
    folder = tmp_path_factory.mktemp("qwen3vl")
    model, processor = tiny_vlm
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


TEXT_WORDS = ("<pad> <unk> <|im_start|> <|im_end|> <think> </think> user assistant "
              "a sharp photo of cat on the sofa").split()
TEXT_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% if not enable_thinking %}<think> </think> {% endif %}"
    "{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_text_tokenizer():
    """A word-level tokenizer with a Qwen-shaped chat template; no hub files."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TEXT_WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = TEXT_CHAT_TEMPLATE
    return tok


def _tiny_qwen3(hidden: int, layers: int = 3, seed: int = 0) -> Qwen3Model:
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(TEXT_WORDS), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
    )  # fmt: skip
    return Qwen3Model(config).eval()


@pytest.fixture(scope="session")
def tiny_qwen3():
    """`tiny_qwen3(hidden)`: a tiny random Qwen3 text encoder."""
    return _tiny_qwen3


@pytest.fixture(scope="session")
def tiny_text_encoder_dir(tiny_text_tokenizer, tmp_path_factory):
    """A folder with text_encoder/ and tokenizer/ whose embeddings fit the tiny FLUX.2 preset (2 layers x 32)."""
    folder = tmp_path_factory.mktemp("text")
    _tiny_qwen3(32).save_pretrained(folder / "text_encoder")
    tiny_text_tokenizer.save_pretrained(folder / "tokenizer")
    return folder
