"""`StrSRPipeline`: StrSR as a `diffusers.DiffusionPipeline`, running the very per-image core of strsr-upscale.

    pipe = StrSRPipeline.from_pretrained("strsr-flux/", torch_dtype=torch.bfloat16)
    pipe.enable_model_cpu_offload()
    pipe("photo.png", outscale=2).images[0].save("photo_x2.png")

Components: `transformer` (the diffusers DiT), `vae`, `conditioning` (the null embedding, a fixed prompt embedding, or
the VLM adapter: `strsr.inference.diffusers_components`), and for VLM conditioning `vlm` (the Qwen3-VL backbone) and
its `processor`; the preset, latent mode, tile plan and seed are the pipeline's config (model_index.json). A folder
in the hub layout holds one sub-folder per component, and the StrSR LoRA, when the transformer carries one, as
`pytorch_lora_weights.safetensors` in diffusers' format (`load_lora_weights` reads it; `from_pretrained` loads it).

Each image goes through `strsr.inference.upscale.upscale_loaded` over a `SuperResolver` on these components: the
same tiling, VLM pre-resize, posterior seed, rounding and --outscale resize as strsr-upscale, which runs this class
for `--offload model|sequential`. diffusers' own `enable_model_cpu_offload()`, `enable_sequential_cpu_offload()` and
`enable_group_offload()` work on it. The VLM runs once per image, and under model offload it is moved back to the CPU
as soon as its features are computed, before any tile reaches the DiT.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.loaders import Flux2LoraLoaderMixin
from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from PIL import Image

from strsr.inference.diffusers_components import PipelineVLMEncoder, VLMConditioningModel, conditioning_model
from strsr.inference.pipeline import MAX_INPUT_PIXELS, SuperResolver
from strsr.inference.upscale import OutputOptions, upscale_loaded
from strsr.io.atomic import fsync_folder
from strsr.io.images import LoadedImage, image_from_pil, load_image
from strsr.model.adapter import VLMConditioning
from strsr.model.generator import StrSRGenerator
from strsr.model.vlm import DEFAULT_VLM_PROMPT, MAX_VLM_TOKENS
from strsr.presets import get_preset
from strsr.spec import MissingWeightsError, ModelSpec, SpecError

OFFLOAD_MODES = ("none", "model", "sequential")
LORA_ADAPTER = "strsr"  # the adapter name the StrSR LoRA gets in the transformer


@dataclass
class StrSRPipelineOutput(BaseOutput):
    """images: one per input, a Pillow image (output_type "pil", 8-bit) or the (H, W, C) uint8/uint16 samples the
    output file is written with (output_type "np")."""

    images: list


class StrSRPipeline(DiffusionPipeline, Flux2LoraLoaderMixin):
    """x4 one-step DiT super-resolution (StrSR) as a diffusers pipeline; see the module docstring.

    LoRA files load through diffusers' `Flux2LoraLoaderMixin`: diffusers-format keys (`transformer.<module>.lora_A
    .weight`, what `save_pretrained` writes for either family) are read as they are.
    """

    # The VAE runs before the DiT on every tile, so it sits before it: per tile only the VAE moves (MBs), the DiT
    # stays on the GPU. The VLM is first and is offloaded by the pipeline right after it runs.
    model_cpu_offload_seq = "vlm->conditioning->vae->transformer"
    _optional_components = ["vlm", "processor"]
    # The conditioning reads its own weight's device to place the VLM features, so it is never split onto the meta
    # device by sequential offloading; it is at most a few hundred MB (FLUX.2 klein's adapter: 39 M parameters).
    _exclude_from_cpu_offload = ["conditioning"]
    weights_are_random = False  # strsr-upscale warns when the model is untrained

    def __init__(self, transformer, vae, conditioning, vlm=None, processor=None, preset: str = "tiny",
                 latent: str = "sample", tile: int | None = None, overlap: int = 64, seed: int = 0,
                 vlm_prompt: str = "", vlm_max_tokens: int = MAX_VLM_TOKENS):  # fmt: skip
        super().__init__()
        get_preset(preset)  # a clear error for an unknown name
        image_conditioned = isinstance(conditioning, VLMConditioning)
        if image_conditioned != (vlm is not None) or (vlm is None) != (processor is None):
            raise ValueError("StrSRPipeline: a VLM conditioning needs the vlm and its processor, and only it does "
                             f"(conditioning {type(conditioning).__name__}, vlm {type(vlm).__name__})")  # fmt: skip
        if vlm is not None and hasattr(vlm, "lm_head"):  # Qwen3VLForConditionalGeneration: the backbone runs
            vlm = vlm.model
        self.register_modules(transformer=transformer, vae=vae, conditioning=conditioning, vlm=vlm,
                              processor=processor)  # fmt: skip
        self.register_to_config(preset=preset, latent=latent, tile=tile, overlap=overlap, seed=seed,
                                vlm_prompt=vlm_prompt, vlm_max_tokens=vlm_max_tokens)  # fmt: skip
        if vlm is not None:
            conditioning.encoder = PipelineVLMEncoder(
                vlm, processor, device=lambda: self._execution_device, after=self._offload_vlm,
                prompt=vlm_prompt or DEFAULT_VLM_PROMPT, max_tokens=vlm_max_tokens,
            )  # fmt: skip
        # accelerate's model offload reads the previous model's parameters to find its device, so a model without
        # any (the tiny presets' pixel-shuffle VAE) leaves the chain; it is then offloaded on its own.
        self.model_cpu_offload_seq = "->".join(
            name for name in type(self).model_cpu_offload_seq.split("->")
            if next(iter(getattr(getattr(self, name), "parameters", tuple)()), None) is not None
        )  # fmt: skip
        self._generator = StrSRGenerator(get_preset(preset), transformer, vae, conditioning, latent).eval()

    # ------------------------------------------------------------------------------------------- building

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, tile: int | None = None, overlap: int = 64,
                  offload: str = "none") -> StrSRPipeline:  # fmt: skip
        """The pipeline of the generator `spec` describes: exactly what strsr-upscale and `SuperResolver.from_spec`
        run (`build_inference_generator`: with `spec.lora_mode` "merged" the LoRA merged, then --quantize/--compile);
        with "unmerged" the base transformer keeps the LoRA as the diffusers adapter "strsr", so `save_pretrained`
        writes it as a LoRA file. `offload` "model" or "sequential" (strsr-upscale's
        --offload) builds the weights in CPU memory, in the precision the GPU would get, and offloads them to the
        spec's GPU (with --quantize they are built on the GPU, where torchao quantises them, then offloaded)."""
        from strsr.model.build import build_inference_generator, checkpoint_for, resolve_device

        if offload not in OFFLOAD_MODES:
            raise SpecError(f"--offload {offload!r}: choose from {', '.join(OFFLOAD_MODES)}")
        preset = get_preset(spec.preset)
        device = resolve_device(spec.device)
        if offload != "none":
            if device.type != "cuda":
                raise SpecError(f"--offload {offload} keeps the weights in CPU memory and runs them on a GPU; on "
                                f"--device {device} there is nothing to offload (use --offload none)")  # fmt: skip
            if spec.quantize == "none":
                precision = "bf16" if spec.precision == "auto" else spec.precision  # auto on a GPU
                spec = spec.replace(device="cpu", precision=precision)
        model = build_inference_generator(spec)
        transformer, lora = _split_lora(model.transformer)
        encoder = model.conditioning.encoder if model.image_conditioned else None
        pipe = cls(transformer=transformer, vae=model.vae, conditioning=conditioning_model(model.conditioning),
                   vlm=None if encoder is None else encoder.model, processor=None if encoder is None else
                   encoder.processor, preset=spec.preset, latent=spec.latent, tile=tile, overlap=overlap,
                   seed=spec.seed, vlm_prompt=spec.prompt if encoder is not None else "")  # fmt: skip
        if lora is not None:
            pipe._load_lora_dict(*lora)
        pipe.weights_are_random = spec.pretrained is None and checkpoint_for(spec, preset) is None
        pipe.enable_offload(offload, device)
        return pipe

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> StrSRPipeline:
        """diffusers' `from_pretrained` on a local folder (nothing is downloaded), then the StrSR LoRA file if the
        folder has one (as the unfused adapter "strsr"; `fuse_lora()` merges it as strsr-upscale does)."""
        folder = Path(pretrained_model_name_or_path)
        if not (folder / "model_index.json").is_file():
            raise MissingWeightsError(f"{folder}: not a StrSR pipeline folder (no model_index.json)")
        kwargs.setdefault("local_files_only", True)
        pipe = super().from_pretrained(folder, **kwargs)
        _align_cpu_tensors(pipe)
        if (folder / LORA_WEIGHT_NAME_SAFE).is_file():
            pipe.load_lora_weights(folder, weight_name=LORA_WEIGHT_NAME_SAFE, adapter_name=LORA_ADAPTER)
        return pipe

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """Write the hub layout into `save_directory` (replaced as a whole, by renames: a failed save leaves the old
        folder). A LoRA adapter on the transformer is written as `pytorch_lora_weights.safetensors` beside the base
        weights; a fused one cannot be told apart from the base, so it is refused."""
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            lora = self._unload_lora_for_saving()
            try:
                super().save_pretrained(tmp, **kwargs)
                self._save_weightless_components(tmp)
                if lora is not None:
                    state, config, _ = lora
                    self.save_lora_weights(tmp, transformer_lora_layers=state,
                                           transformer_lora_adapter_metadata=dict(config))  # fmt: skip
            finally:
                if lora is not None:
                    self._load_lora_dict(*lora)
            _replace_folder(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _save_weightless_components(self, folder: Path) -> None:
        """An empty weights file for a model without tensors (the tiny presets' pixel-shuffle VAE): diffusers writes
        none for it, and its from_pretrained then finds nothing to load. Files get the umask's usual modes."""
        from safetensors.torch import save_file

        for name, component in self.components.items():
            if isinstance(component, ModelMixin) and not component.state_dict():
                save_file({}, folder / name / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
        umask = os.umask(0)
        os.umask(umask)
        for path in [folder, *folder.rglob("*")]:
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)

    def _unload_lora_for_saving(self):
        """(LoRA tensors by module path, its LoraConfig dict, adapter name) with the adapter removed from the
        transformer, or None without one."""
        configs = getattr(self.transformer, "peft_config", None) or {}
        if not configs:
            return None
        if len(configs) > 1:
            raise ValueError(f"save_pretrained writes one LoRA; the transformer has {sorted(configs)}: "
                             "delete_adapters() the others first")  # fmt: skip
        if self.num_fused_loras:
            raise ValueError("the LoRA is fused into the transformer: unfuse_lora() before save_pretrained, or "
                             "unload_lora_weights() to save the merged weights without a LoRA file")  # fmt: skip
        from peft.utils import get_peft_model_state_dict

        (name, config), = configs.items()
        state = {k: v.detach() for k, v in get_peft_model_state_dict(self.transformer, adapter_name=name).items()}
        self.unload_lora_weights()
        return state, config.to_dict(), name

    def _load_lora_dict(self, state: dict[str, torch.Tensor], config: dict, name: str = LORA_ADAPTER) -> None:
        """Inject a LoRA given as tensors by module path and its LoraConfig dict (as `load_lora_weights` would from a
        file: the same metadata)."""
        self.load_lora_into_transformer({f"transformer.{k}": v for k, v in state.items()}, self.transformer,
                                        adapter_name=name, metadata={f"transformer.{k}": v for k, v in config.items()},
                                        _pipeline=self)  # fmt: skip

    # ------------------------------------------------------------------------------------------- offloading

    def enable_offload(self, mode: str, device: torch.device | str | None = None) -> None:
        """strsr-upscale's --offload: "none", "model" (`enable_model_cpu_offload`) or "sequential"
        (`enable_sequential_cpu_offload`), computing on `device` (default: diffusers' accelerator)."""
        if mode not in OFFLOAD_MODES:
            raise SpecError(f"--offload {mode!r}: choose from {', '.join(OFFLOAD_MODES)}")
        if mode == "model":
            self.enable_model_cpu_offload(device=device)
        elif mode == "sequential":
            self.enable_sequential_cpu_offload(device=device)

    def _offload_vlm(self) -> None:
        """Under model offload, move the VLM back to the CPU now (diffusers would keep it until the image is done)."""
        for hook in getattr(self, "_all_hooks", None) or ():
            if hook.model is self.vlm:
                hook.offload()

    # ------------------------------------------------------------------------------------------- running

    def resolver(self, *, tile: int | None = None, overlap: int | None = None, seed: int | None = None):
        """The `SuperResolver` over this pipeline's components, its buffers on the execution device."""
        generator = self._generator
        if generator.vae is not self.vae:  # a component replaced since: rebuild the latent statistics
            generator = self._generator = StrSRGenerator(get_preset(self.config.preset), self.transformer, self.vae,
                                                         self.conditioning, self.config.latent).eval()  # fmt: skip
        generator.transformer, generator.conditioning = self.transformer, self.conditioning
        device = self._execution_device
        codec = generator.codec  # its BatchNorm statistics are not a component: they follow the execution device
        codec.bn_mean, codec.bn_std = codec.bn_mean.to(device), codec.bn_std.to(device)
        tile = tile or self.config.tile or get_preset(self.config.preset).default_tile
        overlap = self.config.overlap if overlap is None else overlap
        return SuperResolver(generator, tile=tile, overlap=overlap, seed=self.config.seed if seed is None else seed)

    @torch.no_grad()
    def upscale_image(self, image: LoadedImage, progress=None, *, bit_depth: int | None = None, alpha: bool = True,
                      rounding: str = "floor", tile: int | None = None, overlap: int | None = None,
                      seed: int | None = None):  # fmt: skip
        """`SuperResolver.upscale_image` on this pipeline (the `Upscaler` that `upscale_loaded` drives); offloaded
        components go back to the CPU afterwards."""
        try:
            return self.resolver(tile=tile, overlap=overlap, seed=seed).upscale_image(
                image, progress, bit_depth=bit_depth, alpha=alpha, rounding=rounding)  # fmt: skip
        finally:
            self.maybe_free_model_hooks()

    @torch.no_grad()
    def __call__(self, image, *, outscale: float = 4.0, resize_filter: str = "lanczos", rounding: str = "floor",
                 output_format: str = "png", tile: int | None = None, overlap: int | None = None,
                 seed: int | None = None, output_type: str = "pil", return_dict: bool = True,
                 progress=None):  # fmt: skip
        """Upscale one image or a list: Pillow images, file paths (read as strsr-upscale reads them: EXIF
        orientation, 16-bit, alpha) or `LoadedImage`s. `outscale`, `resize_filter` and `rounding` are strsr-upscale's
        -s, --resize-filter and --rounding; `output_format` (png, jpg, webp, tif) sets bit depth and alpha as that
        file would have them; `tile`, `overlap` and `seed` override the config for this call. Returns
        `StrSRPipelineOutput(images=...)` (or a 1-tuple with return_dict False)."""
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type {output_type!r}: choose pil or np")
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        options = OutputOptions(outscale=outscale, rounding=rounding, resize_filter=resize_filter)
        upscaler = _CallUpscaler(self, tile, overlap, seed)
        results = []
        for item in images:
            result = upscale_loaded(upscaler, _loaded(item), options, "." + output_format.lower().lstrip("."),
                                    progress)  # fmt: skip
            results.append(result.to_pil() if output_type == "pil" else result.samples)
        return StrSRPipelineOutput(images=results) if return_dict else (results,)


@dataclass
class _CallUpscaler:
    """One `__call__`'s tile/overlap/seed on the pipeline's `upscale_image` (the protocol `upscale_loaded` drives)."""

    pipe: StrSRPipeline
    tile: int | None
    overlap: int | None
    seed: int | None

    def upscale_image(self, image, progress=None, **options):
        return self.pipe.upscale_image(image, progress, tile=self.tile, overlap=self.overlap, seed=self.seed,
                                       **options)  # fmt: skip


def _loaded(item) -> LoadedImage:
    if isinstance(item, LoadedImage):
        return item
    if isinstance(item, Image.Image):
        return image_from_pil(item)
    if isinstance(item, (str, os.PathLike)):
        return load_image(item, max_pixels=MAX_INPUT_PIXELS)
    if isinstance(item, np.ndarray):
        return image_from_pil(Image.fromarray(item))
    raise TypeError(f"expected a Pillow image, a file path or a LoadedImage, got {type(item).__name__}")


def _split_lora(transformer):
    """(the plain diffusers transformer, None) or, for a peft-wrapped one, (its base with the adapters removed,
    (LoRA tensors by module path, LoraConfig dict, adapter name))."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    if not isinstance(transformer, PeftModel):
        return transformer, None
    config = transformer.peft_config["default"]
    prefix = "base_model.model."
    state = {k.removeprefix(prefix): v.detach().clone() for k, v in get_peft_model_state_dict(transformer).items()}
    return transformer.unload(), (state, config.to_dict(), LORA_ADAPTER)


def _align_cpu_tensors(pipe: StrSRPipeline, alignment: int = 64) -> None:
    """Copy CPU weights that sit at unaligned addresses (safetensors maps them at 8-byte offsets of the file) into
    freshly allocated memory: MKL picks other kernels for unaligned operands, so the same weights would give results
    that differ in the last bit from the pipeline that was saved."""
    with torch.no_grad():
        for component in pipe.components.values():
            if not isinstance(component, torch.nn.Module):
                continue
            for tensor in [*component.parameters(), *component.buffers()]:
                if tensor.device.type == "cpu" and tensor.data_ptr() % alignment:
                    tensor.data = tensor.data.clone()


def _replace_folder(new: Path, target: Path) -> None:
    """Put folder `new` at `target` by renames; an existing `target` is moved aside first and removed last."""
    old = None
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise NotADirectoryError(f"{target}: exists and is not a folder")
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        os.replace(target, old / target.name)
    os.replace(new, target)
    fsync_folder(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["OFFLOAD_MODES", "StrSRPipeline", "StrSRPipelineOutput", "VLMConditioningModel"]
