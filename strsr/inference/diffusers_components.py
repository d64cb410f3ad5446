"""strsr's conditioning modules as diffusers models, so `StrSRPipeline` can register, save and load them.

`save_pretrained` / `from_pretrained` need a `ModelMixin` + `ConfigMixin` per component. These classes are the very
conditioning modules the generator runs (`NullConditioning`, `PromptConditioning`, `VLMConditioning`, so
`StrSRGenerator` and the checkpoint code see the class they know), with their sizes recorded as a config. Their
tensors stay in float32 under a bf16 `torch_dtype`, as `build_generator` keeps them.

`PipelineVLMEncoder` is the `VLMEncoder` a pipeline drives: its inputs go to the pipeline's execution device (under
offloading the Qwen3-VL's parameters sit on the CPU or the meta device between calls, so their device is not where
it runs), and after each batch of images it calls back, so the pipeline can move the VLM off the GPU before any tile
reaches the DiT.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from strsr.model.adapter import VLMAdapter, VLMConditioning
from strsr.model.conditioning import NullConditioning, PromptConditioning
from strsr.model.vlm import VLMEncoder

__all__ = ["ModelMixin", "NullConditioningModel", "PipelineVLMEncoder", "PromptConditioningModel",
           "VLMConditioningModel", "conditioning_model"]  # fmt: skip
# ModelMixin is named in this module on purpose: diffusers' from_pretrained looks a custom component's loadable base
# class up in the component's own module.


class NullConditioningModel(NullConditioning, ModelMixin, ConfigMixin):
    """The learned null embedding (num_tokens, width)."""

    _keep_in_fp32_modules = ["embedding"]

    @register_to_config
    def __init__(self, width: int, num_tokens: int = 1):
        super().__init__(width, num_tokens)


class PromptConditioningModel(PromptConditioning, ModelMixin, ConfigMixin):
    """A fixed prompt embedding (1, length, width), with a (1, length) mask when `masked`."""

    _keep_in_fp32_modules = ["tokens"]

    @register_to_config
    def __init__(self, length: int, width: int, masked: bool = False):
        mask = torch.ones(1, length, dtype=torch.bool) if masked else None
        super().__init__(torch.zeros(1, length, width), mask)


class VLMConditioningModel(VLMConditioning, ModelMixin, ConfigMixin):
    """The VLM adapter (vlm_width -> condition_width); the Qwen3-VL itself is a separate pipeline component, attached
    as `encoder` by the pipeline (not saved with this model)."""

    _keep_in_fp32_modules = ["adapter"]

    @register_to_config
    def __init__(self, vlm_width: int, condition_width: int):
        super().__init__(VLMAdapter(vlm_width, condition_width))


def conditioning_model(module: nn.Module) -> ModelMixin:
    """The diffusers model holding the same tensors as a generator's conditioning module (copied, float32 kept)."""
    if isinstance(module, ModelMixin):
        return module
    if isinstance(module, NullConditioning):
        num_tokens, width = module.embedding.shape
        model = NullConditioningModel(width, num_tokens)
    elif isinstance(module, PromptConditioning):
        _, length, width = module.tokens.shape
        model = PromptConditioningModel(length, width, masked=module.mask is not None)
    elif isinstance(module, VLMConditioning):
        model = VLMConditioningModel(module.adapter.vlm_width, module.adapter.condition_width)
    else:
        raise TypeError(f"unknown conditioning module {type(module).__name__}")
    reference = next(iter(module.state_dict().values()))
    model.to(reference.device)  # float32 as built; a dtype here would trip diffusers' keep-in-fp32 warning
    model.load_state_dict(module.state_dict())
    return model.eval()


class PipelineVLMEncoder(VLMEncoder):
    """A `VLMEncoder` whose inputs go to `device()` and that calls `after()` once a batch's features are computed."""

    def __init__(self, model, processor, *, device: Callable[[], torch.device], after: Callable[[], None], **kwargs):
        super().__init__(model, processor, **kwargs)
        self._device = device
        self._after = after

    @property
    def device(self) -> torch.device:
        return self._device()

    def _run(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        try:
            return super()._run(pixels)
        finally:
            self._after()
