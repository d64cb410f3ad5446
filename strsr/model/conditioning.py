"""Conditioning for the DiT: a learned null embedding, or the base model's own text encoder on a fixed prompt.

Both produce a `Condition` in the transformer's conditioning width. A prompt is encoded once and kept as a buffer,
so the text encoder can be freed before any image is processed. The VLM dual encoder (paper Eq. 5,
`strsr.model.adapter`) is the third mode: a per-image `Condition` from the LR image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline
from torch import nn

from strsr.model.backbones import Condition
from strsr.presets import Preset
from strsr.spec import MissingWeightsError


class NullConditioning(nn.Module):
    """A learned (num_tokens, width) embedding used in place of a prompt; starts at zero."""

    def __init__(self, width: int, num_tokens: int = 1):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(num_tokens, width))

    def forward(self, batch: int = 1) -> Condition:
        return Condition(self.embedding.unsqueeze(0).expand(batch, -1, -1))


class PromptConditioning(nn.Module):
    """A fixed, precomputed prompt embedding (1, L, D) with its mask; not trained."""

    def __init__(self, tokens: torch.Tensor, mask: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("tokens", tokens.detach().clone())
        self.register_buffer("mask", None if mask is None else mask.detach().bool().clone())

    def forward(self, batch: int = 1) -> Condition:
        return Condition(self.tokens, self.mask).expand(batch)


@torch.no_grad()
def encode_prompt_flux2(text_encoder, tokenizer, prompt: str, *, layers, max_length: int) -> Condition:
    """FLUX.2 [klein]: Qwen3 hidden states of `layers` concatenated per token, over the padded chat prompt.

    Uses diffusers' own FLUX.2 klein prompt encoder so the layout is exactly the pipeline's; all tokens, padding
    included, are attended to, as in that pipeline.
    """
    tokens = Flux2KleinPipeline._get_qwen3_prompt_embeds(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        prompt=prompt,
        dtype=torch.float32,
        device=torch.device("cpu"),
        max_sequence_length=max_length,
        hidden_states_layers=tuple(layers),
    )
    return Condition(tokens)


@torch.no_grad()
def encode_prompt_zimage(text_encoder, tokenizer, prompt: str, *, max_length: int) -> Condition:
    """Z-Image: the second-to-last Qwen3 hidden state over the chat prompt; padding is masked out."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    inputs = tokenizer([text], padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    device = next(text_encoder.parameters()).device
    mask = inputs.attention_mask.to(device).bool()
    hidden = text_encoder(input_ids=inputs.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
    return Condition(hidden.hidden_states[-2].float().cpu(), mask.cpu())


def encode_prompt(preset: Preset, text_encoder, tokenizer, prompt: str) -> Condition:
    if preset.family == "flux2":
        return encode_prompt_flux2(
            text_encoder, tokenizer, prompt, layers=preset.text_encoder_layers, max_length=preset.text_max_length
        )
    return encode_prompt_zimage(text_encoder, tokenizer, prompt, max_length=preset.text_max_length)


def load_text_encoder(pretrained: str | Path, *, dtype: torch.dtype, device="cpu"):
    """The base model's Qwen3 text encoder and tokenizer from `<pretrained>/text_encoder` and `/tokenizer`."""
    from transformers import AutoModel, AutoTokenizer

    root = Path(pretrained)
    for sub in ("text_encoder", "tokenizer"):
        if not (root / sub).is_dir():
            raise MissingWeightsError(f"{root / sub}: missing folder (text conditioning needs the base text encoder)")
    if not (root / "text_encoder" / "config.json").is_file():
        raise MissingWeightsError(f"{root / 'text_encoder' / 'config.json'}: missing text encoder config")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    encoder = AutoModel.from_pretrained(root / "text_encoder", dtype=dtype, local_files_only=True).to(device)
    return encoder.eval(), tokenizer


def prompt_conditioning(preset: Preset, text_encoder, tokenizer, prompt: str) -> PromptConditioning:
    condition = encode_prompt(preset, text_encoder, tokenizer, prompt)
    if condition.tokens.shape[-1] != preset.condition_width:
        raise ValueError(
            f"text encoder gives {condition.tokens.shape[-1]}-wide embeddings, preset {preset.name!r} expects "
            f"{preset.condition_width}"
        )
    return PromptConditioning(condition.tokens, condition.mask)
