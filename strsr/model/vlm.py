"""The VLM half of StrSR's dual encoder (paper §3.2, Eq. 5): E_VLM(x_LR), from a frozen Qwen3-VL.

The LR image (before the x4 upsampling) and a fixed prompt go through the model's chat template: one user turn with
the image then the prompt, and the generation prompt. The language model's last hidden state is kept only at the
text and template positions (attention mask 1, not an image placeholder): those tokens have attended to the image,
so they carry its semantics in a length that does not grow with the image. At most 512 are kept.

Before the processor sees an image it is resized exactly as the official scripts' `qwen_vl_utils.process_vision_info`
(qwen-vl-utils 0.0.8, the official pin) does: a Pillow bicubic resize to sides that are multiples of 28 with between
4 and 16384 28x28 patches. The processor then resizes again to its own patch multiple. Newer qwen-vl-utils releases
use another factor for Qwen3-VL; the checkpoints were trained with 0.0.8's, so that is the one reproduced here.

Features are computed once per image and cached by a hash of its pixels for the run (tiles of one image, or a
repeated training sample, never pay twice). The model is held outside any nn.Module tree, so the generator's
`.to()`, `state_dict()` and optimiser never see its 4 B parameters.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from pathlib import Path

import torch
from PIL import Image

from strsr.spec import MissingWeightsError

# The prompt the official StrSR checkpoints were trained with, verbatim (typo included): a corrected prompt would
# give the adapter tokens it never saw.
DEFAULT_VLM_PROMPT = (
    "Descibe this image in detail, especially the text in image. Cinematic, hyper sharpness, highly detailed, "
    "perfect without deformations. Camera, hyper detailed photo, realistic maximum detail, 32k, Color. Grading, "
    "ultra HD, extreme meticulous detailing, skin pore detailing"
)
MAX_VLM_TOKENS = 512

# qwen-vl-utils 0.0.8's image pre-resize: side multiple, pixel bounds, and the widest aspect ratio it accepts.
PRE_RESIZE_FACTOR = 28
PRE_RESIZE_MIN_PIXELS = 4 * 28 * 28
PRE_RESIZE_MAX_PIXELS = 16384 * 28 * 28
PRE_RESIZE_MAX_RATIO = 200


def load_vlm(folder: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """Qwen3-VL's backbone (no LM head) and its processor from a local Hugging Face folder, frozen and in eval.

    The processor (image mean/std, patch and merge sizes, chat template) comes from the folder's own configs.
    """
    from transformers import AutoConfig, AutoProcessor, Qwen3VLModel

    root = Path(folder)
    if not root.is_dir():
        raise MissingWeightsError(f"{root}: missing Qwen3-VL folder (VLM conditioning needs a local Qwen3-VL)")
    if not (root / "config.json").is_file():
        raise MissingWeightsError(f"{root / 'config.json'}: missing Qwen3-VL model config")
    # Released checkpoints carry preprocessor_config.json; transformers 5 saves it inside processor_config.json.
    if not any((root / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise MissingWeightsError(f"{root}: missing Qwen3-VL image processor config (preprocessor_config.json)")
    if not (root / "tokenizer.json").is_file() and not (root / "tokenizer_config.json").is_file():
        raise MissingWeightsError(f"{root}: missing Qwen3-VL tokenizer (tokenizer.json / tokenizer_config.json)")
    if not any(root.glob("*.safetensors")) and not any(root.glob("*.bin")):
        raise MissingWeightsError(f"{root}: no Qwen3-VL weights (*.safetensors or *.bin)")
    model_type = AutoConfig.from_pretrained(root, local_files_only=True).model_type
    if model_type != "qwen3_vl":
        raise ValueError(f"{root}: a {model_type!r} model, VLM conditioning needs Qwen3-VL ('qwen3_vl')")

    model, info = Qwen3VLModel.from_pretrained(root, dtype=dtype, local_files_only=True, output_loading_info=True)
    if info["missing_keys"]:  # lm_head is the only expected leftover, and it shows as unexpected, not missing
        names = sorted(info["missing_keys"])
        raise MissingWeightsError(f"{root}: Qwen3-VL weights lack {len(names)} tensors ({', '.join(names[:3])} ...)")
    processor = AutoProcessor.from_pretrained(root, local_files_only=True)
    return model.to(device).eval().requires_grad_(False), processor


def text_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int, max_tokens: int = MAX_VLM_TOKENS
) -> list[torch.Tensor]:
    """Per row of (B, S) ids, the first `max_tokens` sequence indices that are attended to and not image tokens."""
    keep = attention_mask.bool() & (input_ids != image_token_id)  # (B, S)
    return [row.nonzero().squeeze(1)[:max_tokens] for row in keep]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(3, h, w) float in [0, 1] -> uint8 on the CPU, truncating as the official scripts do (`(x * 255).to(uint8)`);
    for the pixels of a decoded 8-bit file this gives them back exactly."""
    if image.dtype == torch.uint8:
        return image.cpu()
    return (image.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu()


def pre_resize_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) qwen-vl-utils 0.0.8 resizes an image to before the Qwen3-VL processor sees it: sides
    rounded to multiples of 28, then scaled (keeping the aspect ratio) into [4, 16384] patches of 28x28."""
    if max(height, width) / min(height, width) > PRE_RESIZE_MAX_RATIO:
        raise ValueError(f"a {width}x{height} image is too elongated for the VLM (aspect ratio over "
                         f"{PRE_RESIZE_MAX_RATIO}, which Qwen3-VL's preprocessing refuses); use --conditioning none "
                         "or text")  # fmt: skip
    factor = PRE_RESIZE_FACTOR
    new_h = max(factor, round(height / factor) * factor)
    new_w = max(factor, round(width / factor) * factor)
    if new_h * new_w > PRE_RESIZE_MAX_PIXELS:
        beta = math.sqrt(height * width / PRE_RESIZE_MAX_PIXELS)
        new_h = math.floor(height / beta / factor) * factor
        new_w = math.floor(width / beta / factor) * factor
    elif new_h * new_w < PRE_RESIZE_MIN_PIXELS:
        beta = math.sqrt(PRE_RESIZE_MIN_PIXELS / (height * width))
        new_h = math.ceil(height * beta / factor) * factor
        new_w = math.ceil(width * beta / factor) * factor
    return new_h, new_w


def pre_resize(pixels: torch.Tensor) -> Image.Image:
    """(3, h, w) uint8 -> the RGB Pillow image the official pipeline hands the processor (bicubic resize to
    `pre_resize_size`)."""
    image = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
    height, width = pre_resize_size(image.height, image.width)
    return image.resize((width, height), Image.Resampling.BICUBIC)


def image_key(image: torch.Tensor) -> str:
    """Cache key of a (3, h, w) uint8 image: its size and a hash of its pixels."""
    digest = hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()
    return f"{tuple(image.shape)}:{digest}"


class VLMEncoder:
    """E_VLM: LR images -> (B, L, width) float32 hidden states and their (B, L) bool mask, L <= max_tokens.

    model:     a `Qwen3VLModel`, or a `Qwen3VLForConditionalGeneration` (its backbone is used); frozen here.
    processor: the matching Qwen3-VL processor (chat template included).
    cache_size: how many images' features to keep (least recently used go first); 0 disables the cache.
    """

    def __init__(
        self,
        model,
        processor,
        *,
        prompt: str = DEFAULT_VLM_PROMPT,
        max_tokens: int = MAX_VLM_TOKENS,
        cache_size: int = 64,
    ):
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if hasattr(model, "lm_head"):  # Qwen3VLForConditionalGeneration: its backbone holds the hidden states
            model = model.model
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        config = model.config
        self.width: int = config.text_config.hidden_size
        self.image_token_id: int = config.image_token_id
        self._check_processor(config)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        self.text: str = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", **kwargs
    ) -> VLMEncoder:
        return cls(*load_vlm(folder, dtype=dtype, device=device), **kwargs)

    def _check_processor(self, config) -> None:
        # A processor from another checkpoint would cut patches the vision tower cannot embed.
        vision, images = config.vision_config, self.processor.image_processor
        got = (images.patch_size, images.merge_size, images.temporal_patch_size)
        want = (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size)
        if got != want:
            raise ValueError(f"image processor patch/merge/temporal sizes {got} differ from the Qwen3-VL's {want}")
        token_id = self.processor.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        if token_id != config.image_token_id:
            raise ValueError(f"tokenizer's image token id {token_id} differs from the model's {config.image_token_id}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LR images (B, 3, h, w), float in [0, 1] or uint8 -> tokens (B, L, width) float32, mask (B, L) bool.

        Rows shorter than the longest are zero-padded (mask False); with one prompt every row has the same length.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected LR images (B, 3, h, w), got shape {tuple(images.shape)}")
        pixels = [to_uint8(image) for image in images]
        keys = [image_key(p) for p in pixels]
        misses = list(dict.fromkeys(k for k in keys if k not in self._cache))
        by_key = dict(zip(keys, pixels))  # equal keys are equal pixels: each distinct image runs once
        fresh = dict(zip(misses, self._run([by_key[k] for k in misses]))) if misses else {}
        rows = [fresh[k] if k in fresh else self._cache[k] for k in keys]
        for key in dict.fromkeys(keys):  # rows are taken first: remembering may evict this batch's own hits
            if key in fresh:
                self._remember(key, fresh[key])
            elif key in self._cache:
                self._cache.move_to_end(key)
        length = max(r.shape[0] for r in rows)
        tokens = rows[0].new_zeros(len(rows), length, self.width)
        mask = torch.zeros(len(rows), length, dtype=torch.bool, device=tokens.device)
        for i, row in enumerate(rows):
            tokens[i, : row.shape[0]] = row
            mask[i, : row.shape[0]] = True
        return tokens, mask

    def _remember(self, key: str, features: torch.Tensor) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = features
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _run(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        """One batched VLM pass over distinct (3, h, w) uint8 images -> per image (L_i, width) float32."""
        images = [pre_resize(p) for p in pixels]
        inputs = self.processor(text=[self.text] * len(pixels), images=images, return_tensors="pt", padding=True)
        if "mm_token_type_ids" not in inputs:
            # Qwen3-VL's M-RoPE needs it whenever image_grid_thw is given; without it positions would be wrong.
            raise ValueError("the Qwen3-VL processor returned no mm_token_type_ids; use the checkpoint's own processor")
        device = self.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        hidden = self.model(**inputs).last_hidden_state  # (B, S, width)
        positions = text_positions(inputs["input_ids"], inputs["attention_mask"], self.image_token_id, self.max_tokens)
        return [h[idx].float() for h, idx in zip(hidden, positions)]
